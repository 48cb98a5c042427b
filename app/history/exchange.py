"""The JSON document a chat is exported to and imported from, the one exchange format of the history.

`export_document` builds it from the store's values (`HistoryStore.export_json` hands them over), and
`parse_chat_document` validates it on import into plain values that the store then writes. Nothing here
touches the database, so the format can be tested and reused alone; `formats.render_markdown` turns the
document into Markdown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.history.errors import ChatImportError
from app.history.formats import DEFAULT_TITLE
from app.history.rows import ChatSummary, StoredMessage
from app.history.schema import ROLES, STATUSES
from engine.stats import GenerationStats

EXPORT_FORMAT = "tandem-chat"
# Of the JSON document: bump when a field changes meaning, and keep reading old ones. 2: every version of
# every turn, with `parent` links and `chat.current`; the model and drafter of each reply.
EXPORT_VERSION = 2


@dataclass(frozen=True)
class ImportedMessage:
    role: str
    content: str
    status: str
    created_at: float | None
    settings: dict[str, Any] | None
    stats: dict[str, Any] | None
    ab: dict[str, Any] | None
    parent: int | None = None  # index of the message this one follows
    model: str | None = None
    drafter: str | None = None


@dataclass(frozen=True)
class ImportedChat:
    title: str
    created_at: float | None
    updated_at: float | None
    settings: dict[str, Any]
    messages: list[ImportedMessage]
    current: int | None = None  # index of the last message of the conversation shown


def stats_summary(stats: dict[str, Any] | None) -> dict[str, Any]:
    """Speed and acceptance figures of a stored `asdict(GenerationStats)`, by the engine's own properties.

    Returns {} when the dict does not rebuild into GenerationStats (stats from an older or newer engine): the
    raw dict is still exported, only the derived figures are left out."""
    if not stats:
        return {}
    try:
        # "app" holds the GUI's own additions (provenance text, stop reason): see app/records.py.
        gen = GenerationStats.from_dict({k: v for k, v in stats.items() if k != "app"})
        spec = gen.spec
        summary: dict[str, Any] = {
            "decode_tps": gen.decode_tps,
            "prompt_tps": gen.prompt_tps,
            "ttft_s": gen.ttft_s,
            "n_generated": gen.n_generated,
            "total_s": gen.total_s,
        }
        if spec is not None:
            summary |= {
                "drafter": spec.drafter,
                "drafted": spec.drafted,
                "accepted": spec.accepted,
                "acceptance_rate": spec.acceptance_rate,
                "mean_accepted_length": spec.mean_accepted_length,
            }
        return summary
    except (TypeError, ValueError, ZeroDivisionError, AttributeError):
        return {}


# ---------------------------------------------------------------- export


def export_document(
    summary: ChatSummary, messages: Sequence[StoredMessage], current: int | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """The chat as a JSON-ready document: format version, chat settings, and every message (every version
    of every turn) with the model and drafter that wrote it, its settings, raw stats, a `summary` of speed
    and acceptance figures, any A/B result, and `parent`: the index of the message it follows. The
    conversation shown is the path to `chat.current`. Ids are not exported.

    `messages` are all the chat's messages, oldest first, and `current` the id of the last one shown."""
    index = {m.id: i for i, m in enumerate(messages)}
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": time.time(),
        "chat": {
            "title": summary.title,
            "created_at": summary.created_at,
            "updated_at": summary.updated_at,
            "settings": settings,
            "current": index.get(current) if current is not None else None,
        },
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "created_at": m.created_at,
                "model": m.model,
                "drafter": m.drafter,
                "parent": index.get(m.parent_id) if m.parent_id is not None else None,
                "settings": m.settings,
                "stats": m.stats,
                "summary": stats_summary(m.stats),
                "ab": m.ab,
            }
            for m in messages
        ],
    }


# ---------------------------------------------------------------- import validation


def parse_chat_document(data: dict[str, Any] | str | bytes) -> ImportedChat:
    """Validate an exported chat (the dict, or its JSON text); ChatImportError names the first bad field."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise ChatImportError(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
        except UnicodeDecodeError as e:
            raise ChatImportError(f"not valid JSON: the file is not UTF-8 text ({e.reason})") from None
    if not isinstance(data, dict):
        raise ChatImportError(f"not a Tandem chat export: expected a JSON object, got {_kind(data)}")
    if data.get("format") != EXPORT_FORMAT:
        raise ChatImportError(
            f"not a Tandem chat export: field 'format' should be {EXPORT_FORMAT!r}, "
            f"got {data.get('format')!r}"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ChatImportError(f"field 'version' should be a positive integer, got {version!r}")
    if version > EXPORT_VERSION:
        raise ChatImportError(
            f"this export was made by a newer Tandem (format version {version}; this one reads up to "
            f"{EXPORT_VERSION})"
        )
    chat = _field(data, "chat", dict, "")
    title = _field(chat, "title", str, "chat.").strip() or DEFAULT_TITLE
    raw_messages = _field(data, "messages", list, "")
    messages = [_parse_message(m, i) for i, m in enumerate(raw_messages)]
    current = _optional_index(chat, "current", len(messages), "chat.")
    return ImportedChat(
        title=" ".join(title.split()),
        created_at=_optional_time(chat, "created_at", "chat."),
        updated_at=_optional_time(chat, "updated_at", "chat."),
        settings=_optional_dict(chat, "settings", "chat.") or {},
        messages=messages,
        current=len(messages) - 1 if current is None and messages else current,
    )


def _parse_message(raw: Any, index: int) -> ImportedMessage:
    where = f"messages[{index}]."
    if not isinstance(raw, dict):
        raise ChatImportError(f"{where[:-1]}: expected an object, got {_kind(raw)}")
    role = _field(raw, "role", str, where)
    if role not in ROLES:
        raise ChatImportError(f"{where}role: expected one of {', '.join(ROLES)}, got {role!r}")
    status = raw.get("status", "complete")
    if status not in STATUSES:
        raise ChatImportError(f"{where}status: expected one of {', '.join(STATUSES)}, got {status!r}")
    return ImportedMessage(
        role=role,
        content=_field(raw, "content", str, where),
        # Nothing is generating into an imported reply, so one saved mid-stream is as good as interrupted.
        status="interrupted" if status == "streaming" else status,
        created_at=_optional_time(raw, "created_at", where),
        settings=_optional_dict(raw, "settings", where),
        stats=_optional_dict(raw, "stats", where),
        ab=_optional_dict(raw, "ab", where),
        # A message follows the one before it unless it names another (format 1 has no versions).
        parent=_optional_index(raw, "parent", index, where) if "parent" in raw else _previous(index),
        model=_optional_str(raw, "model", where),
        drafter=_optional_str(raw, "drafter", where),
    )


def _optional_index(obj: dict[str, Any], key: str, limit: int, where: str) -> int | None:
    """An index into the messages below `limit` (a parent comes before its replies), or None."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ChatImportError(f"{where}{key}: expected the index of an earlier message or null, got "
            f"{value!r}")
    return value


def _previous(index: int) -> int | None:
    return index - 1 if index else None


def _optional_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise ChatImportError(f"{where}{key}: expected a string or null, got {_kind(value)}")
    return value


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise ChatImportError(f"{where}{key}: missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise ChatImportError(f"{where}{key}: expected {_kind_name(kind)}, got {_kind(value)}")
    return value


def _optional_dict(obj: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        raise ChatImportError(f"{where}{key}: expected an object or null, got {_kind(value)}")
    return value


def _optional_time(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        raise ChatImportError(f"{where}{key}: expected a Unix time in seconds, got {value!r}")
    return float(value)


def _kind(value: Any) -> str:
    names: dict[type, str] = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "true/false",
        type(None): "null",
    }
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _kind_name(kind: type) -> str:
    names: dict[type, str] = {dict: "an object", list: "an array", str: "a string"}
    return names.get(kind, kind.__name__)
