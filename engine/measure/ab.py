"""A/B of one prompt: decoded plainly and speculatively, alternating, several rounds, on the same loaded pair
with the same settings and seed. `tandem bench` and the app's A/B button both run this; it reports the median
speed of each side and how far the runs spread, the time to first token, and whether the outputs are
token-identical. On a shared machine one run can be slowed by another program: a large spread between the
runs of one side says so ("timings disturbed") instead of reporting a speedup that is not one.

At the first divergence the target's top-2 logit margin there is looked up afterwards, by replaying the
plain run up to that token with margins on: a near-tie means batched and single-token floating point
disagreed, not that speculation changed what the model would say. (Computing margins during the timed plain
run would slow only that side: one partial sort of the vocabulary per token.)

Every run starts from an empty KV cache (each evaluates the whole prompt: no warm cache favours either side)
and the speculative runs from a fresh draft-length controller; the engine's cost curve, which is the
machine's and not the request's, is kept.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.events import DoneEvent, Event, NoticeEvent, StopReason
from engine.inference.api import ChatEngineAPI
from engine.stats import Divergence, GenerationStats, SpecStats
from engine.text import shown

Side = Literal["plain", "speculative"]
NEAR_TIE = 0.5  # logits: below this gap, batched vs single-token rounding can flip the greedy choice
CONTEXT_CHARS = 48  # text shown before the point of divergence
REPORT_VERSION = 2  # 2: several rounds per side, their spread and the load average (1: one run each)
AB_ROUNDS = 3  # runs of each side, alternating plain / speculative, then speculative / plain, ...
# (fastest - slowest) / median of one side's runs above which the timings were disturbed: on a quiet
# machine repeated decodes of the same prompt agree within a few percent.
DISTURBED_SPREAD = 0.15
DISTURBED = "timings disturbed — other programs were using the CPU"


@dataclass(frozen=True, slots=True)
class ABStep:
    """One engine event of an A/B run, tagged with the side that produced it and its round (0-based)."""

    side: Side
    event: Event
    round: int = 0


@dataclass(frozen=True, slots=True)
class ABSide:
    """One run of one side."""

    text: str
    tokens: tuple[int, ...]
    stop_reason: StopReason
    stats: GenerationStats


@dataclass(frozen=True, slots=True)
class ABResult:
    seed: int
    params: GenerationParams  # with the seed both sides used
    n_prompt: int
    plain_runs: tuple[ABSide, ...]  # in the order they ran; every plain run writes the same tokens
    spec_runs: tuple[ABSide, ...]
    divergence: Divergence | None  # the first speculative run that differs from the plain output
    context_before: str  # the text both wrote just before the divergence ("" when identical)
    plain_piece: str  # what each side wrote at the divergence
    spec_piece: str
    drafter_note: str | None  # why the engine has no drafter, if it has none
    load_average: float | None = None  # the system's 1-minute load average when the A/B ended

    @property
    def plain(self) -> ABSide:
        return self.plain_runs[0]

    @property
    def spec(self) -> ABSide:
        return self.spec_runs[0]

    @property
    def identical(self) -> bool:
        return all(run.tokens == self.plain.tokens for run in (*self.plain_runs, *self.spec_runs))

    @property
    def plain_tps(self) -> float:
        return statistics.median(run.stats.decode_tps for run in self.plain_runs)

    @property
    def spec_tps(self) -> float:
        return statistics.median(run.stats.decode_tps for run in self.spec_runs)

    @property
    def speedup(self) -> float:
        """Median speculative over median plain decode speed."""
        return self.spec_tps / self.plain_tps if self.plain_tps else 0.0

    @property
    def disturbed(self) -> bool:
        return self.report().disturbed

    def report(self) -> ABReport:
        sp = self.spec.stats.spec
        div = self.divergence
        return ABReport(
            seed=self.seed,
            temperature=self.params.sampling.temperature,
            max_tokens=self.params.max_tokens,
            k_max=self.params.spec.k_max or 0,
            n_prompt=self.n_prompt,
            plain_runs_tps=tuple(run.stats.decode_tps for run in self.plain_runs),
            spec_runs_tps=tuple(run.stats.decode_tps for run in self.spec_runs),
            load_average=self.load_average,
            plain_ttft_s=self.plain.stats.ttft_s,
            spec_ttft_s=self.spec.stats.ttft_s,
            n_plain=len(self.plain.tokens),
            n_spec=len(self.spec.tokens),
            plain_stop=self.plain.stop_reason.value,
            spec_stop=self.spec.stop_reason.value,
            drafter=sp.drafter if sp else None,
            acceptance=sp.acceptance_rate if sp else 0.0,
            mean_accepted_length=sp.mean_accepted_length if sp else 1.0,
            mean_k=mean_k(sp),
            k_off_share=k_off_share(sp),
            off_reason=(sp.main_reason if sp else self.drafter_note),
            identical=self.identical,
            divergence_position=div.position if div else None,
            divergence_margin=div.top2_margin if div and math.isfinite(div.top2_margin) else None,
            context_before=self.context_before,
            plain_piece=self.plain_piece,
            spec_piece=self.spec_piece,
            created_at=time.time(),
        )


@dataclass(frozen=True, slots=True)
class ABReport:
    """The figures of an A/B run as plain data: kept with the chat (JSON) and shown by the app."""

    seed: int
    temperature: float
    max_tokens: int
    k_max: int
    n_prompt: int
    plain_runs_tps: tuple[float, ...]  # decode tok/s of each run of each side
    spec_runs_tps: tuple[float, ...]
    load_average: float | None  # 1-minute load average when the A/B ended (None: not known)
    plain_ttft_s: float
    spec_ttft_s: float
    n_plain: int
    n_spec: int
    plain_stop: str
    spec_stop: str
    drafter: str | None
    acceptance: float
    mean_accepted_length: float
    mean_k: float
    k_off_share: float
    off_reason: str | None
    identical: bool
    divergence_position: int | None
    divergence_margin: float | None
    context_before: str
    plain_piece: str
    spec_piece: str
    created_at: float
    # The server the run went to (engine.remote.ab), or None for the loaded pair. A server reports no
    # logit margins, so a divergence there cannot be told apart as rounding or fault.
    remote: str | None = None

    @property
    def plain_tps(self) -> float:
        return _median(self.plain_runs_tps)

    @property
    def spec_tps(self) -> float:
        return _median(self.spec_runs_tps)

    @property
    def speedup(self) -> float:
        return self.spec_tps / self.plain_tps if self.plain_tps else 0.0

    @property
    def rounds(self) -> int:
        return min(len(self.plain_runs_tps), len(self.spec_runs_tps))

    @property
    def plain_spread(self) -> float:
        """(fastest - slowest) / median of the plain runs: 0.03 means they agreed within 3%."""
        return _spread(self.plain_runs_tps)

    @property
    def spec_spread(self) -> float:
        return _spread(self.spec_runs_tps)

    @property
    def disturbed(self) -> bool:
        """Runs of one side disagree by more than a quiet machine's noise: another program took the CPU
        during some of them, and the speedup says nothing."""
        return self.rounds > 1 and max(self.plain_spread, self.spec_spread) > DISTURBED_SPREAD

    def timing_note(self) -> str:
        """How the speed figures were measured and how far they can be trusted, in plain words."""
        runs = f"median of {self.rounds} runs per side" if self.rounds > 1 else "one run per side"
        load = f"; load average {self.load_average:.1f}" if self.load_average is not None else ""
        spread = (
            f"runs spread {self.plain_spread:.0%} (plain) and {self.spec_spread:.0%} (speculative)"
            if self.rounds > 1
            else "a single run cannot show whether other programs slowed it"
        )
        if self.disturbed:
            return (
                f"{DISTURBED[0].upper()}{DISTURBED[1:]}: the {runs} disagree ({spread}{load}), so the "
                f"speedup ({self.speedup:.2f}×) cannot be trusted. Run the A/B again when the machine is "
                "quieter."
            )
        return f"Alternating plain and speculative runs, {runs}: {spread}{load}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": REPORT_VERSION,
            **asdict(self),
            "plain_tps": self.plain_tps,
            "spec_tps": self.spec_tps,
            "speedup": self.speedup,
            "disturbed": self.disturbed,
        }

    @classmethod
    def from_dict(cls, data: object) -> ABReport | None:
        """None when `data` is not a report this version can read (a hand-edited or foreign export). A
        version-1 report (one run per side) reads as one round."""
        if not isinstance(data, dict) or data.get("version") not in (1, REPORT_VERSION):
            return None
        if data["version"] == 1:
            data = {
                **data,
                "plain_runs_tps": [data.get("plain_tps")],
                "spec_runs_tps": [data.get("spec_tps")],
                "load_average": None,
            }
        try:
            # Fields with a default were added later: a report saved before them still reads.
            values = {f.name: data[f.name] for f in fields(cls) if f.name in data or f.name != "remote"}
            values["plain_runs_tps"] = tuple(float(x) for x in values["plain_runs_tps"])
            values["spec_runs_tps"] = tuple(float(x) for x in values["spec_runs_tps"])
            if not values["plain_runs_tps"] or not values["spec_runs_tps"]:
                return None
            return cls(**values)
        except (KeyError, TypeError, ValueError):
            return None

    def verdict(self) -> str:
        return "identical" if self.identical else f"differ from token {self.divergence_position}"

    def explanation(self) -> str:
        """Whether the two replies match, in plain words."""
        if self.identical:
            sampled = ""
            if self.temperature > 0:
                sampled = (
                    f" Sampling was random (temperature {self.temperature:g}) but both runs used seed "
                    f"{self.seed}, so they drew the same tokens."
                )
            drafted = "" if self.drafter else " (nothing was drafted: this says nothing about speculation)"
            return (
                f"Identical: both runs wrote the same {self.n_plain} tokens{drafted}. "
                f"Speculative decoding changes how fast the reply comes, not what it says.{sampled}"
            )
        where = self.divergence_position or 0
        # Model text on one line, newlines shown as \n: the pieces are quoted inside a sentence.
        context = shown(self.context_before, 2 * CONTEXT_CHARS)
        plain, spec = shown(self.plain_piece, CONTEXT_CHARS), shown(self.spec_piece, CONTEXT_CHARS)
        if self.remote is not None and self.plain_piece and self.spec_piece:  # both wrote on, differently
            return (
                f"The replies agree for the first {where} streamed pieces, then differ: after "
                f"“…{context}” plain wrote “{plain}” and speculative wrote “{spec}”. {self.remote} reports "
                "no logit margins, so Tandem cannot tell whether that was a near-tie rounded differently by "
                "a batched verify or a fault in the server."
            )
        if self.divergence_margin is None:
            plain_stop = _STOPS.get(self.plain_stop, self.plain_stop)
            spec_stop = _STOPS.get(self.spec_stop, self.spec_stop)
            return (
                f"The runs agree on every token both wrote, but plain wrote {self.n_plain} tokens and "
                f"the speculative run {self.n_spec} (plain stopped: {plain_stop}; speculative: {spec_stop})."
            )
        lead = (
            f"The runs agree for the first {where} tokens, then differ: after “…{context}” "
            f"plain wrote “{plain}” and speculative wrote “{spec}”; "
            "everything after follows from that one token. "
        )
        if self.divergence_margin < NEAR_TIE:
            return lead + (
                "There the model’s top two choices were almost tied "
                f"(logit gap {self.divergence_margin:.3g}). "
                "Checking several tokens in one batch rounds slightly differently from checking one at a "
                "time, and on a near-tie that tips the choice. This is floating-point noise, not a change "
                "in what the model would say."
            )
        return lead + (
            f"There the model clearly preferred one token (logit gap {self.divergence_margin:.3g}), so "
            "rounding does not explain it: this looks like a bug in speculative verification. Please report "
            "it with this chat exported as JSON."
        )


_STOPS = {
    "eog": "end of reply",
    "stop_string": "stop string",
    "max_tokens": "token limit",
    "context_full": "context full",
    "cancelled": "cancelled",
}


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _spread(values: Sequence[float]) -> float:
    mid = _median(values)
    return (max(values) - min(values)) / mid if len(values) > 1 and mid > 0 else 0.0


def load_average() -> float | None:
    """The system's 1-minute load average (None where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def mean_k(spec: SpecStats | None) -> float:
    ks = spec.k_history if spec else ()
    return sum(ks) / len(ks) if ks else 0.0


def k_off_share(spec: SpecStats | None) -> float:
    """Share of steps where the controller chose k = 0 (1.0 when nothing ran speculatively)."""
    ks = spec.k_history if spec else ()
    return sum(1 for k in ks if k == 0) / len(ks) if ks else 1.0


def first_divergence(
    plain: Sequence[int], spec: Sequence[int], margins: Sequence[float]
) -> Divergence | None:
    for i, (a, b) in enumerate(zip(plain, spec, strict=False)):
        if a != b:
            return Divergence(i, a, b, margins[i] if i < len(margins) else float("nan"))
    if len(plain) != len(spec):
        i = min(len(plain), len(spec))
        return Divergence(
            i, plain[i] if i < len(plain) else -1, spec[i] if i < len(spec) else -1, float("nan")
        )
    return None


def iter_ab(
    engine: ChatEngineAPI,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    cancel: CancelToken | None = None,
    rounds: int = AB_ROUNDS,
) -> Iterator[ABStep | ABResult]:
    """Every event of every run as `ABStep`s, then one `ABResult`; nothing more if cancelled. Rounds
    alternate which side goes first (plain, speculative; speculative, plain; ...) so a slow drift in the
    machine's speed hits both sides alike.

    The engine is left holding the last run (plain when `rounds` is odd) in its KV cache."""
    # Here, not at the top: it loads llama.cpp, and the app imports this module's result types in the GUI
    # thread at start-up.
    from engine.inference.sampling import resolve_seed

    seed = resolve_seed(params.sampling)
    params = replace(params, sampling=replace(params.sampling, seed=seed))
    tokens, notices = engine.fit_messages(messages, params.max_tokens)
    for notice in notices:
        yield ABStep("plain", NoticeEvent(notice))
    runs: dict[Side, list[ABSide]] = {"plain": [], "speculative": []}
    spec_controller = engine.controller
    for r in range(max(1, rounds)):
        order: tuple[Side, Side] = ("plain", "speculative") if r % 2 == 0 else ("speculative", "plain")
        for side in order:
            run = yield from _side(engine, tokens, params, side, cancel, r)
            if run is None:
                return
            runs[side].append(run)
            if side == "speculative":
                spec_controller = engine.controller
    plain_runs, spec_runs = tuple(runs["plain"]), tuple(runs["speculative"])
    reference = plain_runs[0]
    div = None
    for run in (*plain_runs[1:], *spec_runs):
        div = first_divergence(reference.tokens, run.tokens, ())
        if div is not None:
            if div.position < min(len(reference.tokens), len(run.tokens)):
                margin = plain_margin(engine, tokens, params, div.position, cancel)
                div = replace(div, top2_margin=margin)
            break
    context = plain_piece = spec_piece = ""
    if div is not None:
        detok = engine.model.detokenize
        other = next(run for run in (*plain_runs[1:], *spec_runs) if run.tokens != reference.tokens)
        context = detok(reference.tokens[: div.position])[-CONTEXT_CHARS:]
        plain_piece = detok(reference.tokens[div.position : div.position + 1])
        spec_piece = detok(other.tokens[div.position : div.position + 1])
    # Record the draft length the speculative side really allowed (unset: the drafter's default).
    used = replace(params.spec, k_max=spec_controller.k_max)
    yield ABResult(
        seed=seed,
        params=replace(params, spec=used),
        n_prompt=len(tokens),
        plain_runs=plain_runs,
        spec_runs=spec_runs,
        divergence=div,
        context_before=context,
        plain_piece=plain_piece,
        spec_piece=spec_piece,
        drafter_note=engine.info.drafter_note if engine.info.drafter is None else None,
        load_average=load_average(),
    )


def run_ab(
    engine: ChatEngineAPI,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    cancel: CancelToken | None = None,
    rounds: int = AB_ROUNDS,
) -> ABResult | None:
    """`iter_ab` without the events: the result, or None if cancelled."""
    result = None
    for item in iter_ab(engine, messages, params, cancel, rounds):
        if isinstance(item, ABResult):
            result = item
    return result


def _side(
    engine: ChatEngineAPI,
    tokens: Sequence[int],
    params: GenerationParams,
    side: Side,
    cancel: CancelToken | None,
    round_: int,
) -> Generator[ABStep, None, ABSide | None]:
    speculative = side == "speculative"
    params = replace(params, spec=replace(params.spec, enabled=speculative))
    engine.reset()  # every run processes the whole prompt: no KV reuse favours either side
    engine.new_controller(params)  # fresh acceptance; the machine's cost curve is kept
    loop = engine.make_loop(params, cancel)
    done: DoneEvent | None = None
    for event in loop.run(list(tokens)):
        if isinstance(event, DoneEvent):
            done = event
        yield ABStep(side, event, round_)
    if done is None or done.stop_reason is StopReason.CANCELLED:
        return None
    return ABSide(done.text, tuple(loop.generated), done.stop_reason, done.stats)


def plain_margin(
    engine: ChatEngineAPI,
    tokens: Sequence[int],
    params: GenerationParams,
    position: int,
    cancel: CancelToken | None,
) -> float:
    """The target's top-2 logit gap at generated token `position` of the plain run, by replaying that run
    (deterministic: same prompt, seed and single-token decodes) with margins on, outside any timing."""
    params = replace(params, max_tokens=position + 1, spec=replace(params.spec, enabled=False))
    engine.reset()
    loop = engine.make_loop(params, cancel, record_margins=True)
    for _ in loop.run(list(tokens)):
        pass
    margins = loop.margins
    return margins[position] if position < len(margins) else float("nan")
