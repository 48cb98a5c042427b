"""Plain data the chat logic works with: per-chat settings, messages as the GUI holds them, and the JSON shape
of generation statistics stored in the history (no Qt here)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from engine.config import GenerationParams, SamplingParams, SpecParams
from engine.stats import GenerationStats

STATS_VERSION = 1
APP_KEY = "app"  # the app's own additions inside a stored stats dict


@dataclass(frozen=True, slots=True)
class ChatSettings:
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 1024
    seed: int | None = None  # None: a random seed per request
    speculative: bool = True  # "speculative decoding (MTP)" on/off for this chat
    engine: str = ""  # "": the model loaded on this computer; else the name of a remote engine

    def to_params(self) -> GenerationParams:
        return GenerationParams(
            sampling=SamplingParams(temperature=self.temperature, top_p=self.top_p, seed=self.seed),
            max_tokens=self.max_tokens,
            spec=SpecParams(enabled=self.speculative),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ChatSettings:
        """Unknown keys are ignored and bad values fall back to the defaults, so old or hand-edited history
        never stops a chat from opening."""
        base = cls()
        if not data:
            return base
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            value, default = data[f.name], getattr(base, f.name)
            if f.name == "seed":
                if value is None or (isinstance(value, int) and not isinstance(value, bool)):
                    values[f.name] = value
            elif isinstance(default, bool):
                if isinstance(value, bool):
                    values[f.name] = value
            elif isinstance(default, (int, float)) and isinstance(value, (int, float)):
                values[f.name] = type(default)(value)
            elif isinstance(default, str) and isinstance(value, str):
                values[f.name] = value
        return dataclasses.replace(base, **values)


@dataclass
class MessageItem:
    """One message as a chat window shows it. `pieces` holds (text, provenance) per generated token:
    0 = the target's own token, d > 0 = an accepted draft token at draft depth d."""

    id: int | None  # history id; None while a reply is still waiting for the model
    role: str
    content: str
    status: str = "complete"  # complete | waiting | streaming | stopped | interrupted | error
    stats: GenerationStats | None = None
    stop_reason: str | None = None
    drafter: str | None = None
    engine: str | None = None  # which engine answered (app.remote_engines.engine_label)
    error: str | None = None
    notices: list[str] = field(default_factory=list)
    pieces: list[tuple[str, int]] = field(default_factory=list)
    # An A/B report kept with this message (engine.measure.ab.ABReport.to_dict).
    ab: dict[str, Any] | None = None
    model: str | None = None  # the model that wrote a reply (None: unknown, or the user's message)
    version: int = 1  # Regenerate and Edit add versions of a turn: this is `version` of `n_versions`
    n_versions: int = 1
    switched_from: str | None = None  # the model of the reply before, when another model wrote this one


def mark_model_switches(messages: list[MessageItem]) -> None:
    """Set `switched_from` on each reply whose model differs from the reply before it in the chat."""
    previous: str | None = None
    for item in messages:
        if item.role != "assistant":
            continue
        item.switched_from = previous if previous and item.model and item.model != previous else None
        previous = item.model or previous


def stats_to_dict(item: MessageItem) -> dict[str, Any]:
    """The stored shape: `GenerationStats.to_dict()` (what the history store summarises on export) plus, under
    "app", what the footer and the provenance view need to show the reply again."""
    data: dict[str, Any] = item.stats.to_dict() if item.stats is not None else {}
    data[APP_KEY] = {
        "version": STATS_VERSION,
        "stop_reason": item.stop_reason,
        "drafter": item.drafter,
        "engine": item.engine,
        "error": item.error,
        "notices": list(item.notices),
        "pieces": [[text, depth] for text, depth in item.pieces],
    }
    return data


def apply_stats_dict(item: MessageItem, data: dict[str, Any] | None) -> None:
    """Fill `item` from a stored stats dict; anything unreadable is left out rather than failing."""
    if not isinstance(data, dict):
        return
    extra = data.get(APP_KEY)
    if isinstance(extra, dict):
        item.stop_reason = extra.get("stop_reason")
        item.drafter = extra.get("drafter")
        engine = extra.get("engine")
        item.engine = engine if isinstance(engine, str) else None
        item.error = extra.get("error")
        item.notices = [str(n) for n in extra.get("notices") or []]
        pieces = extra.get("pieces") or []
        if all(isinstance(p, list) and len(p) == 2 for p in pieces):
            item.pieces = [(str(text), int(depth)) for text, depth in pieces]
    item.stats = stats_from_dict({k: v for k, v in data.items() if k != APP_KEY})


def stats_from_dict(data: Any) -> GenerationStats | None:
    if not isinstance(data, dict):
        return None
    try:
        return GenerationStats.from_dict(data)
    except (TypeError, ValueError):  # a field missing or mistyped: written by an incompatible version
        return None
