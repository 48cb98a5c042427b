"""Generation statistics as dataclasses.

`SpecRecorder` is the mutable sink the speculative loop writes to; `SpecStats` is its frozen snapshot that
travels in the final event. Derived figures (acceptance rate, mean accepted length) are properties, never
stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where speculative output first differs from a plain reference run, and how close the call was."""

    position: int  # index in the generated tokens
    plain_token: int
    spec_token: int
    top2_margin: float  # target's logit gap between its top-2 tokens at that position (plain run)


@dataclass(frozen=True, slots=True)
class SpecStats:
    drafter: str
    steps: int  # verify steps with a non-empty draft
    drafted: int
    accepted: int
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


@dataclass
class SpecRecorder:
    """Mutable sink for one generation's speculative statistics."""

    drafter: str
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
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

    def record_step(self, n_drafted: int, n_accepted: int) -> None:
        if n_drafted == 0:
            return
        self.steps += 1
        self.drafted += n_drafted
        self.accepted += n_accepted
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
        in the snapshot, so "controller chose k=0: verify cost 2.5×, acceptance 9%" aggregates."""
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if detail:
            self.reason_detail[reason] = detail

    def snapshot(self) -> SpecStats:
        return SpecStats(
            drafter=self.drafter,
            steps=self.steps,
            drafted=self.drafted,
            accepted=self.accepted,
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


def _grow(values: list[int], n: int) -> None:
    if len(values) < n:
        values.extend([0] * (n - len(values)))
