"""What the history store hands out: a chat's summary and a stored message, as frozen values.

They live apart from the store so that the export (`exchange.py`), which the store calls, can read them
without importing the store back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ChatSummary:
    id: int
    title: str
    created_at: float
    updated_at: float
    n_messages: int
    preview: str  # last user/assistant message, or with a search: the text around the first match


@dataclass(frozen=True)
class StoredMessage:
    id: int
    chat_id: int
    role: str  # "system" | "user" | "assistant"
    content: str
    status: str  # "complete" | "streaming" | "stopped" | "interrupted" | "error"
    created_at: float
    settings: dict[str, Any] | None  # generation settings the message was produced with
    stats: dict[str, Any] | None  # dataclasses.asdict(GenerationStats); tuples come back as lists
    ab: dict[str, Any] | None  # A/B comparison result attached to this message
    parent_id: int | None = None  # the message this one follows (None: the first of the chat)
    model: str | None = None  # the model that wrote a reply (None: unknown, or a message of the user's)
    drafter: str | None = None  # the drafter that helped it, if speculation was on
    version: int = 1  # which version of this turn (Regenerate and Edit add versions), of n_versions
    n_versions: int = 1
