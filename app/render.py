"""Model output -> safe rich-text HTML for QTextBrowser.

Model output is untrusted. Markdown's raw-HTML passthrough is removed, so any HTML the model writes is
escaped and shown as text; images become links (nothing is fetched); links are only followed after the user
confirms (see chat_view). Fenced code blocks are cut out before Markdown sees them and highlighted with
Pygments, with a "Copy" anchor per block.

Streaming re-renders the growing reply every few tens of milliseconds. `StreamRenderer` splits the text into
blocks at points where rendering the parts separately gives the same HTML as rendering the whole, and caches
every finished block, so each repaint only converts the block still being written.

Model output is also hostile to the renderer itself: small models loop ("- - - - …" nests a list per dash,
Python-Markdown recurses per level) and unclosed brackets make its link search quadratic. So every Markdown
block is bounded: nesting is capped at MAX_NESTING (deeper markers show as text), a block longer than
MAX_BLOCK_CHARS is shown as plain text, and the conversion itself runs under a watchdog (engine.watchdog)
that stops it after BLOCK_BUDGET_S. A block that fails or runs out of time is shown as escaped plain text,
never dropped, and a block that grows from a too-slow one goes straight to plain text while streaming.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import markdown
import pygments
from markdown.treeprocessors import Treeprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from app.records import MessageItem
from app.theme import Colors
from engine.watchdog import Stop, Watchdog

COPY_SCHEME = "tandem-copy"  # href="tandem-copy:N" copies code block N of the message

MAX_NESTING = 8  # list/quote levels rendered as structure; deeper markers are shown as text
MAX_INDENT = 4 * MAX_NESTING  # leading spaces kept on a line (deeper indentation nests without end too)
MAX_BLOCK_CHARS = 20_000  # a longer Markdown block is shown as plain text
# Markdown conversion or highlighting time per block before it is stopped and shown as plain text: with Qt's
# setHtml and layout of the text after it (10-20 ms for a 12 KB block) one render fits in about 50 ms. Real
# blocks convert far faster (7.8 KB of tables in docs/: 10 ms).
BLOCK_BUDGET_S = 0.025
# Where a watchdog may stop a conversion (never inside a callback that would swallow the stop).
_MARKDOWN_DIR = os.path.dirname(markdown.__file__)
_PYGMENTS_DIR = os.path.dirname(pygments.__file__)
_CONTAINER = re.compile(r"[ \t]*(?:[-*+][ \t]+|\d{1,9}[.)][ \t]+|>[ \t]?)")

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$")
# A line that continues the block above it even after a blank line: list items and indented content.
_CONTINUES = re.compile(r"^(\s|[-*+]\s|\d{1,9}[.)]\s|>|\|)")


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "md", "code", or "plain" (a piece of a huge block while it streams: stream_pieces)
    text: str  # markdown source, or the code itself
    lang: str = ""
    closed: bool = True  # code: the closing fence has arrived


def split_blocks(text: str) -> list[Block]:
    """Cut text into Markdown blocks and top-level fenced code blocks.

    Markdown is split at a blank line only when the next line is complete and starts a fresh paragraph-level
    block (not a list item, indented continuation, quote or table row), so each part renders as it would
    inside the whole.
    """
    lines = text.split("\n")
    blocks: list[Block] = []
    md: list[str] = []

    def flush_md() -> None:
        source = "\n".join(md).strip("\n")
        if source:
            blocks.append(Block("md", source))
        md.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush_md()
            marker, lang = fence.group(1), fence.group(2)
            closing = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            code: list[str] = []
            closed = False
            i += 1
            while i < len(lines):
                if closing.match(lines[i]):
                    closed = True
                    break
                code.append(lines[i])
                i += 1
            blocks.append(Block("code", "\n".join(code), lang, closed))
            i += 1
            continue
        if not line.strip() and any(m.strip() for m in md) and i + 2 < len(lines):
            # lines[i + 1] is complete (a newline follows it): split if it starts a fresh block.
            nxt = lines[i + 1]
            if nxt.strip() and not _CONTINUES.match(nxt):
                flush_md()
                i += 1
                continue
        md.append(line)
        i += 1
    flush_md()
    return blocks


STREAM_PIECE_CHARS = 4000  # while streaming, a longer last block is shown as plain pieces of this size


def stream_pieces(blocks: list[Block]) -> list[Block]:
    """`blocks` with every block longer than STREAM_PIECE_CHARS (a model looping on one line, an endless
    code block) cut into plain pieces of that size, for streaming: a piece never changes once the next one
    has started, so each repaint re-sets a few kilobytes, not the whole block, and the cut is the same
    before and after the block is complete. The message renders properly once the reply is complete."""
    out: list[Block] = []
    step = STREAM_PIECE_CHARS
    for block in blocks:
        if len(block.text) <= step:
            out.append(block)
        else:
            out.extend(Block("plain", block.text[i : i + step]) for i in range(0, len(block.text), step))
    return out


class _ImagesToLinks(Treeprocessor):
    """<img src=URL alt=A> -> <a href=URL>[image: A]</a>: no image is ever fetched."""

    def run(self, root: ET.Element) -> None:
        for parent in root.iter():
            for child in list(parent):
                if child.tag == "img":
                    link = ET.Element("a", href=child.get("src", ""))
                    link.text = f"[image: {child.get('alt') or child.get('src', '')}]"
                    link.tail = child.tail
                    parent.insert(list(parent).index(child), link)
                    parent.remove(child)


def _make_markdown() -> markdown.Markdown:
    md = markdown.Markdown(extensions=["tables", "sane_lists", "nl2br"], output_format="html")
    # Raw HTML from the model must never reach the document: without these two, Markdown escapes it.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_ImagesToLinks(md), "images_to_links", 0)
    return md


COMMON_LANGUAGES = (
    "python",
    "bash",
    "javascript",
    "typescript",
    "json",
    "c",
    "cpp",
    "rust",
    "go",
    "java",
    "html",
    "css",
    "sql",
    "yaml",
    "toml",
    "diff",
)


def warm_up() -> threading.Thread:
    """Import the common Pygments lexers in the background: the first import of one costs 5-35 ms, which
    would otherwise land on the GUI thread in the middle of a streaming reply."""

    def load() -> None:
        for name in COMMON_LANGUAGES:
            with contextlib.suppress(ClassNotFound):
                get_lexer_by_name(name)

    thread = threading.Thread(target=load, name="pygments-warm-up", daemon=True)
    thread.start()
    return thread


def cap_nesting(source: str) -> str:
    """`source` with list and quote nesting cut at MAX_NESTING levels per line: the marker that would open
    level MAX_NESTING + 1 is escaped, so it and what follows read as text. Leading indentation is capped at
    MAX_INDENT spaces. Lines within the limits are unchanged."""
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if len(line) - len(line.lstrip(" \t")) > MAX_INDENT:
            line = " " * MAX_INDENT + line.lstrip(" \t")
        pos = depth = 0
        while depth < MAX_NESTING and (m := _CONTAINER.match(line, pos)):
            pos, depth = m.end(), depth + 1
        if depth == MAX_NESTING and (m := _CONTAINER.match(line, pos)):
            rest = line[pos:].lstrip(" \t")
            line = line[:pos] + "\\" + rest
        lines[i] = line
    return "\n".join(lines)


class Renderer:
    """Markdown + code -> Qt rich-text HTML in the given colours. Not thread-safe (GUI thread only)."""

    def __init__(self, colors: Colors) -> None:
        self.colors = colors
        self._md = _make_markdown()
        self._formatter = HtmlFormatter(nowrap=True, noclasses=True, style=colors.pygments_style)
        self.fallbacks = 0  # blocks shown as plain text because Markdown failed or ran out of time
        self._slow: list[str] = []  # blocks that ran out of time: what grows from them is not tried again

    def markdown(self, source: str) -> str:
        """One Markdown block as HTML; escaped plain text when the block is too long, makes Markdown fail,
        or takes more than BLOCK_BUDGET_S (see the module docstring)."""
        out = self.markdown_within(source, BLOCK_BUDGET_S)
        return out if out is not None else self.plain(source)

    def markdown_within(self, source: str, seconds: float) -> str | None:
        """markdown(), or None when the conversion needed more than `seconds` (a block that needs more than
        BLOCK_BUDGET_S is remembered as slow and shown as plain text from then on)."""
        if len(source) > MAX_BLOCK_CHARS or self._is_slow(source):
            return self.plain(source)
        watchdog = Watchdog(min(seconds, BLOCK_BUDGET_S), c_calls=True, stop_in=(_MARKDOWN_DIR,))
        try:
            with watchdog:
                self._md.reset()
                out = self._md.convert(cap_nesting(source))
        except Stop:
            self._md = _make_markdown()  # interrupted half-way: its state is not to be trusted
            if seconds < BLOCK_BUDGET_S:
                return None  # the caller's time ran out, not the block's: try it again later
            self._remember_slow(source)
            return self.plain(source)
        except Exception:  # noqa: BLE001 - RecursionError and any parser bug: the text is still shown
            self._md = _make_markdown()
            return self.plain(source)
        c = self.colors
        table = f'<table border="1" cellspacing="0" cellpadding="4" style="border-color:{c.code_border}">'
        out = out.replace("<table>", table)
        return out.replace("<code>", f'<code style="background-color:{c.inline_code_bg}">')

    def plain(self, source: str) -> str:
        self.fallbacks += 1
        return plain_html(source)

    def _is_slow(self, source: str) -> bool:
        return any(source.startswith(s) for s in self._slow)

    def _remember_slow(self, source: str) -> None:
        self._slow = [*self._slow[-7:], source]

    def code(self, block: Block, index: int, *, highlighted: bool = True) -> str:
        """A code block with its Copy link; highlighted unless it is huge, `highlighted` is False or
        highlighting runs out of time (then escaped text, and so is any block that grows from it: a block
        still being written is highlighted again at every repaint)."""
        body: str | None = None
        if highlighted and len(block.text) <= MAX_BLOCK_CHARS and not self._is_slow(block.text):
            try:
                lexer = get_lexer_by_name(block.lang) if block.lang else TextLexer()
            except ClassNotFound:
                lexer = TextLexer()
            try:
                with Watchdog(BLOCK_BUDGET_S, c_calls=True, stop_in=(_PYGMENTS_DIR,)):
                    body = highlight(block.text, lexer, self._formatter).rstrip("\n")
            except Stop:
                self._remember_slow(block.text)
            except Exception:  # noqa: BLE001 - a lexer bug must not cost the code
                body = None
        if body is None:
            self.fallbacks += 1
            body = html.escape(block.text)
        c = self.colors
        label = html.escape(block.lang or "code")
        copy = f'<a href="{COPY_SCHEME}:{index}" style="color:{c.link}; text-decoration:none">Copy</a>'
        return (
            f'<table width="100%" cellspacing="0" cellpadding="6" border="1" '
            f'style="border-color:{c.code_border}; border-style:solid" bgcolor="{c.code_bg}">'
            f'<tr><td style="color:{c.muted}">{label} &nbsp;·&nbsp; {copy}</td></tr>'
            f'<tr><td><pre style="margin:0; white-space:pre-wrap">{body}</pre></td></tr></table>'
        )

    def document(self, text: str) -> tuple[str, list[str]]:
        """Render a whole message. Returns the HTML body and the text of each code block (for Copy)."""
        return StreamRenderer(self).render(text)


class StreamRenderer:
    """Renders a growing text, converting only the blocks that changed since the last call. With a time
    budget, blocks not converted in time show as plain text for now and `pending` is set: call again (from
    the event loop) to carry on where it stopped. `parts` holds the last render's HTML in pieces of a few
    kilobytes at most where possible (a huge block is cut into pieces), for callers that show them in
    several browsers."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._cache: dict[tuple[Block, int], list[str]] = {}
        self.pending = False
        self.parts: list[str] = []

    def render(self, text: str, budget_s: float | None = None) -> tuple[str, list[str]]:
        started = time.perf_counter()
        parts: list[str] = []
        codes: list[str] = []
        fresh: dict[tuple[Block, int], list[str]] = {}
        self.pending = False
        converted = 0
        r = self.renderer
        for block in split_blocks(text):
            # A code block's HTML embeds its copy index, so the index is part of the cache key.
            key = (block, len(codes) if block.kind == "code" else -1)
            out = self._cache.get(key)
            if out is None and len(block.text) > MAX_BLOCK_CHARS:  # shown as text: in pieces, never one part
                r.fallbacks += 1
                out = self._huge(block, len(codes))
            elif out is None:
                left = None if budget_s is None else budget_s - (time.perf_counter() - started)
                fallbacks = r.fallbacks
                html_: str | None
                if left is not None and converted and left <= 0:
                    html_ = None  # out of time: this block in the next call
                elif block.kind == "code":
                    html_ = r.code(block, len(codes))
                elif left is None or not converted:
                    html_ = r.markdown(block.text)  # the first block of a call gets its full time: progress
                else:
                    html_ = r.markdown_within(block.text, left) if left > 0 else None
                converted += html_ is not None
                if html_ is None:
                    out = None
                elif r.fallbacks > fallbacks and block.kind == "md" and len(block.text) > STREAM_PIECE_CHARS:
                    out = self._huge(block, -1)  # plain text after all: in pieces too
                else:
                    out = [html_]
            if block.kind == "code":
                codes.append(block.text)
            if out is None:
                self.pending = True
                parts.append(plain_html(block.text))  # for now: converted on the next call
                continue
            fresh[key] = out
            parts.extend(out)
        self._cache = fresh
        self.parts = parts
        return "\n".join(parts), codes

    def _huge(self, block: Block, code_index: int) -> list[str]:
        step = STREAM_PIECE_CHARS
        pieces = [block.text[i : i + step] for i in range(0, len(block.text), step)]
        if block.kind != "code":
            return [plain_html(p) for p in pieces]
        # The frame and its Copy link (which copies the whole block) on the first piece.
        head = self.renderer.code(
            Block("code", pieces[0], block.lang, block.closed), code_index, highlighted=False
        )
        rest = [f'<pre style="margin:0; white-space:pre-wrap">{html.escape(p)}</pre>' for p in pieces[1:]]
        return [head, *rest]


def provenance_legend(colors: Colors) -> str:
    last = len(colors.prov_depth) - 1
    swatches = " ".join(
        f'<span style="background-color:{shade}; color:{colors.text}">'
        f"&nbsp;draft {i + 1}{'+' if i == last else ''}&nbsp;</span>"
        for i, shade in enumerate(colors.prov_depth)
    )
    return f"unshaded: the target's own token &nbsp; shaded: accepted from the drafter {swatches}"


def plain_html(text: str) -> str:
    """Escaped text with line breaks kept (user messages are shown as typed)."""
    return f'<p style="white-space:pre-wrap">{html.escape(text)}</p>'


_STOP_WORDS = {
    "max_tokens": "stopped at the token limit",
    "cancelled": "stopped by you",
    "context_full": "stopped: the context window is full",
    "stop_string": "",
    "eog": "",
}


def model_words(model: str | None, drafter: str | None) -> str:
    """Who wrote a reply, for its header: 'SmolLM2 135M Instruct + MTP (Gemma 4 assistant)'."""
    if not model:
        return ""
    return f"{model} + {drafter}" if drafter else model


def footer_text(item: MessageItem) -> str:
    """The statistics line under a finished reply (HTML-escaped)."""
    parts: list[str] = []
    s = item.stats
    if s is not None:
        if s.n_generated > 1:
            parts.append(f"{s.decode_tps:.1f} tok/s")
        parts.append(f"first token {s.ttft_s:.2f} s")
        parts.append(f"{s.n_generated} tokens")
        spec = s.spec
        if spec is not None and spec.drafted:
            parts.append(f"drafted {spec.drafted}, accepted {spec.accepted} ({spec.acceptance_rate:.0%})")
            parts.append(f"mean accepted length {spec.mean_accepted_length:.2f}")
            if not item.model:  # a reply that names its model names the drafter in its header
                parts.append(spec.drafter)
        elif spec is not None:
            reason = f" ({spec.main_reason})" if spec.main_reason else ""
            parts.append(f"{spec.drafter}: nothing drafted{reason}")
        elif s.server is not None:
            from engine.remote.figures import describe

            parts.append(describe(s.server))
        else:
            parts.append("speculation off")
    if item.engine and s is not None and s.server is not None:
        parts.append(f"answered by {item.engine}")
    why = _STOP_WORDS.get(item.stop_reason or "", "")
    if why:
        parts.append(why)
    if item.status == "interrupted":
        parts.append("interrupted (the app closed while it was being written)")
    parts.extend(item.notices)
    # The footer is rich text, and a server's notices and figures are its own words: escape every part.
    return " · ".join(html.escape(part) for part in parts)


def live_footer_text(n_tokens: int, tps: float, draft_share: float, drafter: str | None) -> str:
    parts = [f"generating… {n_tokens} tokens"]
    if tps > 0:
        parts.append(f"{tps:.1f} tok/s")
    if drafter:
        parts.append(f"{draft_share:.0%} of tokens from the drafter · {drafter}")
    return " · ".join(parts)
