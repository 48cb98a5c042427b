"""Immutable events yielded by a generation. The GUI receives these through queued signals, the CLI prints
them; nothing else crosses the engine boundary."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engine.stats import GenerationStats


class StopReason(str, enum.Enum):
    EOG = "eog"  # the model produced an end-of-generation token
    STOP_STRING = "stop_string"
    MAX_TOKENS = "max_tokens"
    CANCELLED = "cancelled"
    CONTEXT_FULL = "context_full"


@dataclass(frozen=True, slots=True)
class TokenEvent:
    token: int
    text: str  # text delta; "" while an incomplete UTF-8 character or a possible stop string is held back
    position: int  # absolute position of this token in the sequence
    # Where it came from: 0 = the target's own sample, d > 0 = a drafter token the target accepted, at
    # 1-based depth d of the draft.
    draft_depth: int
    elapsed_s: float  # seconds since the generation started


@dataclass(frozen=True, slots=True)
class NoticeEvent:
    """Something the user should know that is not an error: speculation fell back, old turns were dropped."""

    message: str


@dataclass(frozen=True, slots=True)
class DoneEvent:
    text: str  # the whole reply
    stop_reason: StopReason
    stats: GenerationStats


Event = TokenEvent | NoticeEvent | DoneEvent
