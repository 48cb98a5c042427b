"""The history's column values: checked on the way in (roles, titles, JSON), shaped on the way out (search
previews)."""

from __future__ import annotations

import json
from typing import Any

from app.history.formats import DEFAULT_TITLE

PREVIEW_CHARS = 120


def fold(text: str | None) -> str | None:
    return text.casefold() if text is not None else None


def clean_title(title: str) -> str:
    return " ".join(str(title).split()) or DEFAULT_TITLE


def check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}; got {value!r}")


def to_json(value: dict[str, Any], what: str) -> str:
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must be JSON-serialisable: {e}") from None


def to_json_or_null(value: dict[str, Any] | None, what: str) -> str | None:
    return None if value is None else to_json(value, what)


def from_json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def snippet(text: str, needle: str | None) -> str:
    """One line of at most PREVIEW_CHARS, around the first match of `needle` (casefolded) when given."""
    flat = " ".join(text.split())
    start = 0
    if needle:
        folded = flat.casefold()
        # casefold() can change lengths (ß -> ss); only then the match offset would not map back, so skip it.
        if len(folded) == len(flat) and needle in folded:
            start = max(0, folded.index(needle) - PREVIEW_CHARS // 4)
    piece = flat[start : start + PREVIEW_CHARS]
    if start > 0:
        piece = "…" + piece[1:]
    if start + PREVIEW_CHARS < len(flat):
        piece = piece[:-1] + "…"
    return piece
