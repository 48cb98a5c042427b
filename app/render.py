"""Model output -> safe rich-text HTML for QTextBrowser.

Model output is untrusted. Markdown's raw-HTML passthrough is removed, so any HTML the model writes is
escaped and shown as text; images become links (nothing is fetched); links are only followed after the user
confirms (see chat_view). Fenced code blocks are cut out before Markdown sees them and highlighted with
Pygments, with a "Copy" anchor per block.

Streaming re-renders the growing reply every few tens of milliseconds. `StreamRenderer` splits the text into
blocks at points where rendering the parts separately gives the same HTML as rendering the whole, and caches
every finished block, so each repaint only converts the block still being written.
"""

from __future__ import annotations

import contextlib
import html
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import markdown
from markdown.treeprocessors import Treeprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from app.records import MessageItem
from app.theme import Colors

COPY_SCHEME = "tandem-copy"  # href="tandem-copy:N" copies code block N of the message

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^\n]*$")
# A line that continues the block above it even after a blank line: list items and indented content.
_CONTINUES = re.compile(r"^(\s|[-*+]\s|\d{1,9}[.)]\s|>|\|)")


@dataclass(frozen=True, slots=True)
class Block:
    kind: str  # "md" or "code"
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


class Renderer:
    """Markdown + code -> Qt rich-text HTML in the given colours. Not thread-safe (GUI thread only)."""

    def __init__(self, colors: Colors) -> None:
        self.colors = colors
        self._md = _make_markdown()
        self._formatter = HtmlFormatter(nowrap=True, noclasses=True, style=colors.pygments_style)

    def markdown(self, source: str) -> str:
        self._md.reset()
        out = self._md.convert(source)
        c = self.colors
        table = f'<table border="1" cellspacing="0" cellpadding="4" style="border-color:{c.code_border}">'
        out = out.replace("<table>", table)
        return out.replace("<code>", f'<code style="background-color:{c.inline_code_bg}">')

    def code(self, block: Block, index: int) -> str:
        try:
            lexer = get_lexer_by_name(block.lang) if block.lang else TextLexer()
        except ClassNotFound:
            lexer = TextLexer()
        body = highlight(block.text, lexer, self._formatter).rstrip("\n")
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
    """Renders a growing text, converting only the blocks that changed since the last call."""

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer
        self._cache: dict[tuple[Block, int], str] = {}

    def render(self, text: str) -> tuple[str, list[str]]:
        parts: list[str] = []
        codes: list[str] = []
        fresh: dict[tuple[Block, int], str] = {}
        for block in split_blocks(text):
            # A code block's HTML embeds its copy index, so the index is part of the cache key.
            key = (block, len(codes) if block.kind == "code" else -1)
            out = self._cache.get(key)
            if out is None:
                r = self._renderer
                out = r.code(block, len(codes)) if block.kind == "code" else r.markdown(block.text)
            if block.kind == "code":
                codes.append(block.text)
            fresh[key] = out
            parts.append(out)
        self._cache = fresh
        return "\n".join(parts), codes


def provenance_legend(colors: Colors) -> str:
    last = len(colors.prov_depth) - 1
    swatches = " ".join(
        f'<span style="background-color:{shade}; color:{colors.text}">'
        f'&nbsp;draft {i + 1}{"+" if i == last else ""}&nbsp;</span>'
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
