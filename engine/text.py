"""Untrusted text made safe to show: anything read from a model file, a template or llama.cpp's log reaches
a terminal or a dialog only through these functions, bounded in length and with control characters
escaped, so a corrupt file cannot flood the screen, retitle the terminal or freeze a dialog.

One rule for every message: `shown(value, limit)` for a value quoted inside a message, `one_line(message)`
for a whole message (every `TandemError` passes through it).
"""

from __future__ import annotations

import re

MESSAGE_LIMIT = 500  # characters in any error message the engine raises
VALUE_LIMIT = 160  # characters of one quoted value (a key, a name, a log line) inside a message
ELLIPSIS = "…"

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides that reorder text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with every control, line-separator and bidi-override character written as an escape."""
    return _UNSAFE.sub(_escape, text)


def elide(text: str, limit: int) -> str:
    """At most `limit` characters: the start and the end, joined by an ellipsis (the end of an error often
    holds its reason)."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ELLIPSIS[:limit]
    head = (limit - 1) * 2 // 3
    tail = limit - 1 - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail else "")


def shown(value: object, limit: int = VALUE_LIMIT) -> str:
    """A value from an untrusted source, ready to quote in a message: escaped, then elided to `limit`.
    Only a bounded slice of a huge string is looked at, so a 30 MB key costs nothing."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 4 * limit:
        # The middle is cut by elide() below anyway (head and tail are each shorter than 2 * limit).
        text = text[: 2 * limit] + text[-2 * limit :]
    return elide(escape_controls(text), limit)


_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """Model output for a terminal: newlines and tabs kept, every other control character (escape
    sequences, carriage returns, bidi overrides) written as an escape. Not bounded: it is the reply."""
    return _UNSAFE_KEEP_LINES.sub(_escape, text)


def one_line(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A whole message on one line: escaped and elided to `limit` characters."""
    return shown(message, limit)
