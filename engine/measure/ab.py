"""A/B of one prompt: decoded plainly, then speculatively, on the same loaded pair with the same settings and
seed. `tandem bench` and the app's A/B button both run this; it reports the speed of each side, the time to
first token, and whether the two outputs are token-identical. At the first divergence it keeps the target's
top-2 logit margin there: a near-tie means batched and single-token floating point disagreed, not that
speculation changed what the model would say.

Both sides start from an empty KV cache (both evaluate the whole prompt: neither gets a warm cache) and from a
fresh draft-length controller (the speculative side earns its draft length within the run, as in bench).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.events import DoneEvent, Event, NoticeEvent, StopReason
from engine.inference.api import ChatEngineAPI
from engine.stats import Divergence, GenerationStats, SpecStats

Side = Literal["plain", "speculative"]
NEAR_TIE = 0.5  # logits: below this gap, batched vs single-token rounding can flip the greedy choice
CONTEXT_CHARS = 48  # text shown before the point of divergence
REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ABStep:
    """One engine event of an A/B run, tagged with the side that produced it."""

    side: Side
    event: Event


@dataclass(frozen=True, slots=True)
class ABSide:
    text: str
    tokens: tuple[int, ...]
    stop_reason: StopReason
    stats: GenerationStats
    decode_s: tuple[tuple[int, float], ...]  # the target's measured seconds per decode of n tokens


@dataclass(frozen=True, slots=True)
class ABResult:
    seed: int
    params: GenerationParams  # with the seed both sides used
    n_prompt: int
    plain: ABSide
    spec: ABSide
    divergence: Divergence | None
    context_before: str  # the text both wrote just before the divergence ("" when identical)
    plain_piece: str  # what each side wrote at the divergence
    spec_piece: str
    drafter_note: str | None  # why the engine has no drafter, if it has none

    @property
    def identical(self) -> bool:
        return self.plain.tokens == self.spec.tokens

    @property
    def speedup(self) -> float:
        base = self.plain.stats.decode_tps
        return self.spec.stats.decode_tps / base if base else 0.0

    def report(self) -> ABReport:
        sp = self.spec.stats.spec
        div = self.divergence
        return ABReport(
            seed=self.seed,
            temperature=self.params.sampling.temperature,
            max_tokens=self.params.max_tokens,
            k_max=self.params.spec.k_max or 0,
            n_prompt=self.n_prompt,
            plain_tps=self.plain.stats.decode_tps,
            spec_tps=self.spec.stats.decode_tps,
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
    plain_tps: float
    spec_tps: float
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
    def speedup(self) -> float:
        return self.spec_tps / self.plain_tps if self.plain_tps else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, **asdict(self), "speedup": self.speedup}

    @classmethod
    def from_dict(cls, data: object) -> ABReport | None:
        """None when `data` is not a report this version can read (a hand-edited or foreign export)."""
        if not isinstance(data, dict) or data.get("version") != REPORT_VERSION:
            return None
        try:
            # Fields with a default were added later: a report saved before them still reads.
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data or f.name != "remote"})
        except (KeyError, TypeError):
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
        if self.remote is not None and self.plain_piece and self.spec_piece:  # both wrote on, differently
            return (
                f"The replies agree for the first {where} streamed pieces, then differ: after "
                f"“…{self.context_before}” plain wrote “{self.plain_piece}” and speculative wrote "
                f"“{self.spec_piece}”. {self.remote} reports no logit margins, so Tandem cannot tell whether "
                "that was a near-tie rounded differently by a batched verify or a fault in the server."
            )
        if self.divergence_margin is None:
            plain_stop = _STOPS.get(self.plain_stop, self.plain_stop)
            spec_stop = _STOPS.get(self.spec_stop, self.spec_stop)
            return (
                f"The runs agree on every token both wrote, but plain wrote {self.n_plain} tokens and "
                f"the speculative run {self.n_spec} (plain stopped: {plain_stop}; speculative: {spec_stop})."
            )
        lead = (
            f"The runs agree for the first {where} tokens, then differ: after “…{self.context_before}” "
            f"plain wrote “{self.plain_piece}” and speculative wrote “{self.spec_piece}”; "
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
) -> Iterator[ABStep | ABResult]:
    """Every event of both runs as `ABStep`s, then one `ABResult`; nothing more if cancelled.

    The engine is left holding the speculative run in its KV cache and that run's controller."""
    # Here, not at the top: it loads llama.cpp, and the app imports this module's result types in the GUI
    # thread at start-up.
    from engine.inference.sampling import resolve_seed

    seed = resolve_seed(params.sampling)
    params = replace(params, sampling=replace(params.sampling, seed=seed))
    tokens, notices = engine.fit_messages(messages, params.max_tokens)
    for notice in notices:
        yield ABStep("plain", NoticeEvent(notice))
    margins: list[float] = []
    plain = yield from _side(engine, tokens, params, "plain", cancel, margins)
    if plain is None:
        return
    spec = yield from _side(engine, tokens, params, "speculative", cancel, [])
    if spec is None:
        return
    div = first_divergence(plain.tokens, spec.tokens, margins)
    context = plain_piece = spec_piece = ""
    if div is not None:
        detok = engine.model.detokenize
        context = detok(plain.tokens[: div.position])[-CONTEXT_CHARS:]
        plain_piece = detok(plain.tokens[div.position : div.position + 1])
        spec_piece = detok(spec.tokens[div.position : div.position + 1])
    # Record the draft length the speculative side really allowed (unset: the drafter's default).
    used = replace(params.spec, k_max=engine.controller.k_max)
    yield ABResult(
        seed=seed,
        params=replace(params, spec=used),
        n_prompt=len(tokens),
        plain=plain,
        spec=spec,
        divergence=div,
        context_before=context,
        plain_piece=plain_piece,
        spec_piece=spec_piece,
        drafter_note=engine.info.drafter_note if engine.info.drafter is None else None,
    )


def run_ab(
    engine: ChatEngineAPI,
    messages: Sequence[ChatMessage],
    params: GenerationParams,
    cancel: CancelToken | None = None,
) -> ABResult | None:
    """`iter_ab` without the events: the result, or None if cancelled."""
    result = None
    for item in iter_ab(engine, messages, params, cancel):
        if isinstance(item, ABResult):
            result = item
    return result


def _side(
    engine: ChatEngineAPI,
    tokens: Sequence[int],
    params: GenerationParams,
    side: Side,
    cancel: CancelToken | None,
    margins: list[float],
) -> Generator[ABStep, None, ABSide | None]:
    speculative = side == "speculative"
    params = replace(params, spec=replace(params.spec, enabled=speculative))
    engine.reset()  # both runs process the whole prompt: no KV reuse favours either side
    engine.new_controller(params)  # both sides start from a fresh measurement
    loop = engine.make_loop(params, cancel, record_margins=not speculative)
    done: DoneEvent | None = None
    for event in loop.run(list(tokens)):
        if isinstance(event, DoneEvent):
            done = event
        yield ABStep(side, event)
    if done is None or done.stop_reason is StopReason.CANCELLED:
        return None
    margins.extend(loop.margins)
    times = tuple(sorted(engine.controller.measured_decode_times().items()))
    return ABSide(done.text, tuple(loop.generated), done.stop_reason, done.stats, times)
