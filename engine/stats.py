"""Generation statistics as dataclasses.

`StepResult` is what one speculative step did; `SpecRecorder` is the mutable sink the loop writes them to;
`SpecStats` is its frozen snapshot that travels in the final event. Derived figures (totals, acceptance
rate, mean accepted length) are properties, never stored twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where speculative output first differs from a plain reference run, and how close the call was."""

    position: int  # index in the generated tokens
    plain_token: int
    spec_token: int
    top2_margin: float  # target's logit gap between its top-2 tokens at that position (plain run)


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step of the generation loop did: the draft it verified, how much of it the target
    accepted, and what it cost. The controller learns from it and the stats recorder counts it."""

    drafted: int  # draft tokens verified (0: a plain single-token decode)
    accepted: int  # of those, accepted by the target
    emitted: tuple[int, ...]  # accepted drafts + the target's own token
    draft_s: float  # drafting, including the controller's decision
    verify_s: float  # the target decode of [last, *draft] alone
    rolled_back: bool  # rejected draft positions were removed from the KV cache

    def depth(self, i: int) -> int:
        """Provenance of emitted token i: its 1-based depth in the draft if it was accepted, else 0."""
        return i + 1 if i < self.accepted else 0


@dataclass(frozen=True, slots=True)
class SpecStats:
    drafter: str
    drafted_by_position: tuple[int, ...]  # index i: drafts that reached depth i+1
    accepted_by_position: tuple[int, ...]  # index i: of those, accepted at depth i+1
    accepted_length_hist: tuple[int, ...]  # index n: steps that accepted exactly n draft tokens
    draft_s: float
    verify_s: float
    plain_s: float  # time in single-token decodes while speculation was off
    other_s: float  # everything else inside the loop (sampling, bookkeeping)
    k_history: tuple[int, ...]  # the draft length chosen at each step (0 = speculation off)
    provenance: tuple[int, ...]  # per generated token: 0 = target's own, d > 0 = accepted draft at depth d
    reasons: tuple[tuple[str, int], ...]  # why speculation did not run, with how many steps each
    n_rollback: int  # KV removals performed

    @property
    def steps(self) -> int:
        """Verify steps with a non-empty draft."""
        return sum(self.accepted_length_hist)

    @property
    def drafted(self) -> int:
        return sum(self.drafted_by_position)

    @property
    def accepted(self) -> int:
        return sum(self.accepted_by_position)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpecStats:
        """From `asdict()` after a JSON round trip (lists for tuples). Keys this version does not know are
        ignored (older files stored the totals too); a missing field raises TypeError."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _as_tuple(v) for k, v in data.items() if k in known})

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens emitted per verify step: 1 (the target's own) + accepted drafts."""
        return 1.0 + self.accepted / self.steps if self.steps else 1.0

    @property
    def current_k(self) -> int:
        return self.k_history[-1] if self.k_history else 0

    @property
    def main_reason(self) -> str | None:
        return max(self.reasons, key=lambda r: r[1])[0] if self.reasons else None


@dataclass(frozen=True, slots=True)
class ServerSpecStats:
    """Speculative-decoding figures a remote server reported for one request (engine.remote.figures reads
    them from llama-server's `timings`, vLLM's `metrics.speculative_decoding`, Tandem's own timings or the
    difference of Prometheus counters). None where the server did not say."""

    source: str  # where the figures come from, in words ("llama-server timings"); "none" when nowhere
    drafted: int | None = None
    accepted: int | None = None
    steps: int | None = None  # verification steps that carried a draft
    accepted_by_position: tuple[int, ...] = ()  # index i: drafts accepted at depth i+1
    drafter: str | None = None  # what the server drafts with, when it says
    server_tps: float | None = None  # decode speed as the server measured it
    caveat: str | None = None  # why the figures may be off, or why there are none

    @property
    def reported(self) -> bool:
        return self.drafted is not None

    @property
    def acceptance_rate(self) -> float | None:
        if self.drafted is None or self.accepted is None:
            return None
        return self.accepted / self.drafted if self.drafted else 0.0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ServerSpecStats:
        """From `asdict()` after a JSON round trip; unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _as_tuple(v) for k, v in data.items() if k in known})

    @property
    def mean_accepted_length(self) -> float | None:
        """Tokens per verification step (1 + accepted drafts), when the server counts its steps."""
        if not self.steps or self.accepted is None:
            return None
        return 1.0 + self.accepted / self.steps


@dataclass(frozen=True, slots=True)
class GenerationStats:
    n_prompt: int  # tokens in the rendered prompt
    n_prompt_cached: int  # of those, reused from the KV cache (not evaluated again)
    prompt_s: float
    ttft_s: float  # time to first emitted token
    n_generated: int
    decode_s: float  # from the first emitted token to the last
    total_s: float
    spec: SpecStats | None = None
    server: ServerSpecStats | None = None  # a remote server generated: what it reported about speculation

    @property
    def n_prompt_evaluated(self) -> int:
        return self.n_prompt - self.n_prompt_cached

    @property
    def prompt_tps(self) -> float:
        return self.n_prompt_evaluated / self.prompt_s if self.prompt_s > 0 else 0.0

    @property
    def decode_tps(self) -> float:
        """Tokens per second after the first token (the first is counted in time to first token)."""
        n = self.n_generated - 1
        return n / self.decode_s if n > 0 and self.decode_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)`, without its copies: every field is immutable (tuples), and asdict
        deep-copies each element of them, 50 ms on the GUI thread for a 20 000-token reply's provenance."""
        return _fields(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GenerationStats:
        """From `asdict()` after a JSON round trip; unknown keys are ignored, a missing field raises
        TypeError."""
        known = {f.name for f in dataclasses.fields(cls)} - {"spec", "server"}
        spec, server = data.get("spec"), data.get("server")
        return cls(
            **{k: v for k, v in data.items() if k in known},
            spec=SpecStats.from_dict(spec) if isinstance(spec, Mapping) else None,
            server=ServerSpecStats.from_dict(server) if isinstance(server, Mapping) else None,
        )


@dataclass
class SpecRecorder:
    """Mutable sink for one generation's speculative statistics."""

    drafter: str
    drafted_by_position: list[int] = field(default_factory=list)
    accepted_by_position: list[int] = field(default_factory=list)
    accepted_length_hist: list[int] = field(default_factory=list)
    draft_s: float = 0.0
    verify_s: float = 0.0
    plain_s: float = 0.0
    other_s: float = 0.0
    k_history: list[int] = field(default_factory=list)
    provenance: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    reason_detail: dict[str, str] = field(default_factory=dict)  # latest wording per reason key
    n_rollback: int = 0

    def record(self, step: StepResult) -> None:
        """Count one step of the loop: a verified draft, or a plain decode while speculation was off."""
        self.k_history.append(step.drafted)
        self.draft_s += step.draft_s
        if step.drafted:
            self.record_step(step.drafted, step.accepted)
            self.n_rollback += step.rolled_back
            self.verify_s += step.verify_s
        else:
            self.plain_s += step.verify_s

    def record_step(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted == 0:
            return
        _grow(self.drafted_by_position, n_drafted)
        _grow(self.accepted_by_position, n_drafted)
        _grow(self.accepted_length_hist, n_drafted + 1)
        for i in range(n_drafted):
            self.drafted_by_position[i] += 1
        for i in range(n_accepted):
            self.accepted_by_position[i] += 1
        self.accepted_length_hist[n_accepted] += 1

    def record_reason(self, reason: str, detail: str | None = None) -> None:
        """Count a step without speculation under a stable key; `detail` (with figures) replaces the key
        in the snapshot, so the steps of "drafts would not pay: the drafter's guesses are right..." add up."""
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if detail:
            self.reason_detail[reason] = detail

    def snapshot(self) -> SpecStats:
        return SpecStats(
            drafter=self.drafter,
            drafted_by_position=tuple(self.drafted_by_position),
            accepted_by_position=tuple(self.accepted_by_position),
            accepted_length_hist=tuple(self.accepted_length_hist),
            draft_s=self.draft_s,
            verify_s=self.verify_s,
            plain_s=self.plain_s,
            other_s=self.other_s,
            k_history=tuple(self.k_history),
            provenance=tuple(self.provenance),
            reasons=tuple(
                (self.reason_detail.get(key, key), n)
                for key, n in sorted(self.reasons.items(), key=lambda r: -r[1])
            ),
            n_rollback=self.n_rollback,
        )


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def _grow(values: list[int], n: int) -> None:
    if len(values) < n:
        values.extend([0] * (n - len(values)))


def _fields(obj: Any) -> dict[str, Any]:
    """A frozen dataclass as a dict of its fields, nested dataclasses as dicts (the shape asdict gives)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out[f.name] = _fields(value) if dataclasses.is_dataclass(value) else value
    return out
