"""Token provenance over the rendered reply: each token an accepted draft produced is shaded (deeper the
further into its draft it was) in the document Markdown and code highlighting already rendered, so the
provenance view reads like the reply itself.

The tokens are positions in the Markdown source; the document holds rendered text (no `**`, list markers,
code fences; plus the code blocks' "Copy" line). The rendered text is mostly the source minus markup, so a
greedy walk aligns the two in linear time: equal characters map to each other, and at a difference the
shorter of "skip markup in the source" and "skip text the renderer added" that brings them back in step is
taken. Characters with no place (markup) are not shaded.
"""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor, QTextCharFormat, QTextCursor, QTextDocument

from app.theme import Colors

RESYNC_WINDOW = 96  # how far a difference is searched past, on either side, to get back in step
RESYNC_KEY = 4  # characters that must agree for the two texts to count as back in step


def draft_runs(pieces: list[tuple[str, int]]) -> list[tuple[int, int, int]]:
    """(start, end, depth) in the source text of every run of tokens from drafts of one depth."""
    runs: list[tuple[int, int, int]] = []
    offset = 0
    for text, depth in pieces:
        end = offset + len(text)
        if depth > 0 and end > offset:
            if runs and runs[-1][1] == offset and runs[-1][2] == depth:
                runs[-1] = (runs[-1][0], end, depth)
            else:
                runs.append((offset, end, depth))
        offset = end
    return runs


def _document_text(doc: QTextDocument) -> tuple[str, list[int]]:
    """The document's characters block by block (table cells included) and each one's cursor position;
    positions count UTF-16 units, so an emoji takes two."""
    chars: list[str] = []
    positions: list[int] = []
    block = doc.begin()
    while block.isValid():
        text = block.text().replace("\u2028", "\n")  # a soft line break (Markdown's nl2br) is a line break
        chars.append(text + "\n")
        position = block.position()
        for ch in text + "\n":
            positions.append(position)
            position += 2 if ord(ch) > 0xFFFF else 1
        block = block.next()
    return "".join(chars), positions


def shade(doc: QTextDocument, pieces: list[tuple[str, int]], colors: Colors) -> int:
    """Shade the drafted tokens of `pieces` in `doc` (rendered from their joined text); returns how many
    characters were shaded."""
    source = "".join(text for text, _ in pieces)
    runs = draft_runs(pieces)
    if not runs:
        return 0
    rendered, positions = _document_text(doc)
    # source index -> (start, end) in the document
    place = {i: (positions[j], positions[j] + (2 if ord(rendered[j]) > 0xFFFF else 1))
             for i, j in align(source, rendered).items()}  # fmt: skip
    cursor = QTextCursor(doc)
    cursor.beginEditBlock()
    shaded = 0
    formats = [_format(color) for color in colors.prov_depth]
    for start, end, depth in runs:
        fmt = formats[min(depth, len(formats)) - 1]
        # Line breaks are block boundaries in the document: shading one would restyle the block around it.
        spans = _contiguous(sorted(place[i] for i in range(start, end) if i in place and source[i] != "\n"))
        for first, end_ in spans:
            cursor.setPosition(first)
            cursor.setPosition(end_, QTextCursor.MoveMode.KeepAnchor)
            cursor.mergeCharFormat(fmt)
            shaded += end_ - first
    cursor.endEditBlock()
    return shaded


def align(source: str, rendered: str) -> dict[int, int]:
    """Source index -> rendered index of every source character the rendered text shows (see above)."""
    out: dict[int, int] = {}
    i = j = 0
    n, m = len(source), len(rendered)
    while i < n and j < m:
        if source[i] == rendered[j]:
            out[i] = j
            i += 1
            j += 1
            continue
        key = source[i : i + RESYNC_KEY]
        added = rendered.find(key, j, j + RESYNC_WINDOW + len(key))  # text the renderer put in
        key = rendered[j : j + RESYNC_KEY]
        markup = source.find(key, i, i + RESYNC_WINDOW + len(key))  # markup the renderer took out
        skip_rendered = added - j if added >= 0 else None
        skip_source = markup - i if markup >= 0 else None
        if skip_rendered is not None and (skip_source is None or skip_rendered < skip_source):
            j = added
        elif skip_source is not None:
            i = markup
        else:
            i += 1  # nothing nearby agrees: let the source catch up one character at a time
    return out


def _format(color: str) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setBackground(QBrush(QColor(color)))
    return fmt


def _contiguous(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (start, end) ranges of characters merged where one ends as the next begins."""
    spans: list[tuple[int, int]] = []
    for start, end in ranges:
        if spans and start == spans[-1][1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans
