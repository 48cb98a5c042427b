"""Fit badges: the estimator's verdict for one pair and quantization on this machine, in words a newcomer
reads at a glance ("Fits on GPU", "Partial offload (19 of 36 layers)", "CPU only", "Too large"), with the
speed to expect where the CPU does the work ("CPU only · ≈ 42 tok/s", engine.fit.speed) and a `tone` that
colours it (green: fits the GPU or fast; yellow: about reading speed; red: slow or too large), like LM
Studio's badges. A breakdown of the memory (weights, KV at the chosen context, compute, drafter) against
each device's free memory goes in the tooltip. Plain data: the model manager's widgets only paint it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from engine.compat.options import DrafterOption
from engine.errors import TandemError
from engine.fit.hardware import HardwareInfo
from engine.fit.memory import CPU, DrafterKind
from engine.fit.planner import FitResult, Verdict, fit, memory_parts, pick_quant
from engine.fit.speed import SpeedClass, SpeedEstimate, expected_speed
from engine.store.catalog import Catalog, Pair
from engine.units import format_bytes

BadgeLevel = Literal["gpu", "partial", "cpu", "too_large", "unknown"]
Tone = Literal["good", "fair", "poor", "bad", "unknown"]
TONES: dict[SpeedClass, Tone] = {"fast": "good", "usable": "fair", "slow": "poor"}

VERDICT_TEXT = {
    Verdict.FITS_GPU: "Fits on GPU",
    Verdict.PARTIAL: "Partial offload",
    Verdict.CPU_ONLY: "CPU only",
    Verdict.TOO_LARGE: "Too large",
}
LEVELS: dict[Verdict, BadgeLevel] = {
    Verdict.FITS_GPU: "gpu",
    Verdict.PARTIAL: "partial",
    Verdict.CPU_ONLY: "cpu",
    Verdict.TOO_LARGE: "too_large",
}

# Context sizes the manager's slider offers: powers of two from 2k to 128k tokens.
CONTEXT_STEPS: tuple[int, ...] = tuple(2**n for n in range(11, 18))


@dataclass(frozen=True, slots=True)
class FitBadge:
    level: BadgeLevel
    text: str  # "Partial offload (19 of 36 layers)"
    caveat: str | None  # what the plan gives up to fit: "without the drafter", "context 2048"...
    tooltip: str  # multi-line memory breakdown
    n_ctx: int  # the context the plan is for
    verdict: Verdict | None = None  # None: no estimate could be made
    breakdown: tuple[str, ...] = ()  # the memory lines of the tooltip alone (for a details pane)
    speed: SpeedEstimate | None = None  # where the CPU does (some of) the work
    tone: Tone = "unknown"

    @property
    def label(self) -> str:
        """The verdict and the speed: what a column of badges shows."""
        return f"{self.text} · {self.speed.short}" if self.speed is not None else self.text

    @property
    def full_label(self) -> str:
        """The label and what the plan gives up to fit (a details pane, a dialog)."""
        return f"{self.label} · {self.caveat}" if self.caveat else self.label

    @property
    def needs_confirmation(self) -> bool:
        """No plan fits (or none could be made): the manager warns before a "Load anyway". A caveat does not
        count: the plan that gives something up is still one that fits."""
        return self.level in ("too_large", "unknown")


def hardware_summary(hw: HardwareInfo) -> str:
    """'NVIDIA RTX 4090 (CUDA0): 22.1 GiB free · RAM 28.3 GiB free' (or 'no GPU offload')."""
    gpus = [
        f"{d.description or d.name} ({d.name}): {format_bytes(d.free_bytes)} free" for d in hw.offload_devices
    ]
    gpu_text = " · ".join(gpus) if gpus else "no GPU offload"
    simulated = " (simulated)" if hw.fake else ""
    return f"{gpu_text} · RAM {format_bytes(hw.ram_available_bytes)} free{simulated}"


def _caveat(result: FitResult, has_drafter: bool) -> str | None:
    parts = []
    if result.choice == "smaller_context":
        parts.append(f"context {result.n_ctx} only")
    if has_drafter and result.drafter == "none":
        parts.append("without the drafter")
    elif result.choice == "drafter_on_cpu":
        parts.append("drafter on the CPU")
    return ", ".join(parts) or None


def _breakdown(result: FitResult, hw: HardwareInfo) -> list[str]:
    e = result.estimate
    if e is None:
        return []
    free = {d.name: d.free_bytes for d in hw.offload_devices}
    free[CPU] = hw.ram_available_bytes
    lines = [
        f"At {result.n_ctx} tokens of context (KV {e.settings.kv_type}), {result.shown_gpu_layers} of "
        f"{result.shown_layers} layers on the GPU:"
    ]
    for dev in e.devices:
        parts = memory_parts(e, dev)
        if parts is None:
            continue
        where = "RAM" if dev == CPU else dev
        lines.append(
            f"  {where}: needs {format_bytes(e.device_total(dev))} of {format_bytes(free.get(dev, 0))} free "
            f"({format_bytes(result.budget.get(dev, 0))} usable after headroom)"
        )
        lines.append(f"    {', '.join(parts)}")
    return lines


def _speed(result: FitResult, hw: HardwareInfo) -> SpeedEstimate | None:
    if result.estimate is None or result.verdict not in (Verdict.PARTIAL, Verdict.CPU_ONLY):
        return None
    target = result.estimate.target
    return expected_speed(target.on(CPU).weights - target.lookup_bytes, hw)


def _tone(verdict: Verdict, speed: SpeedEstimate | None) -> Tone:
    if verdict == Verdict.FITS_GPU:
        return "good"
    if verdict == Verdict.TOO_LARGE:
        return "bad"
    return TONES[speed.speed_class] if speed is not None else "fair"


def badge_for(result: FitResult, hw: HardwareInfo, *, has_drafter: bool) -> FitBadge:
    """The badge of a fit() result on `hw`; `has_drafter`: the pair asked for a drafter model or head."""
    text = VERDICT_TEXT[result.verdict]
    if result.verdict == Verdict.PARTIAL:
        text += f" ({result.shown_gpu_layers} of {result.shown_layers} layers)"
    speed = _speed(result, hw)
    caveat = _caveat(result, has_drafter) if result.verdict != Verdict.TOO_LARGE else None
    breakdown = _breakdown(result, hw)
    lines = [f"{text}: {result.explanation}"]
    lines += [f"Plan: {caveat}."] if caveat else []
    lines += [speed.explanation()] if speed is not None else []
    lines += [f"This computer: {hardware_summary(hw)}", *breakdown]
    lines += [f"• {n}" for n in result.notes]
    return FitBadge(
        LEVELS[result.verdict],
        text,
        caveat,
        "\n".join(lines),
        result.n_ctx,
        result.verdict,
        tuple(breakdown),
        speed,
        _tone(result.verdict, speed),
    )


def unknown_badge(reason: str, n_ctx: int) -> FitBadge:
    return FitBadge("unknown", "Fit unknown", None, f"No estimate: {reason}", n_ctx)


# --- catalog pairs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuantFit:
    quant: str
    size_bytes: int | None  # file size (exact or planning estimate) of the target quantization
    badge: FitBadge
    result: FitResult


@dataclass(frozen=True, slots=True)
class PairFit:
    """Every quantization of one pair at one context; `best`: what pick_quant preselects (None: none fit)."""

    pair_id: str
    n_ctx: int
    best: str | None
    quants: tuple[QuantFit, ...]

    def quant(self, name: str | None) -> QuantFit:
        wanted = name or self.best
        for q in self.quants:
            if q.quant == wanted:
                return q
        return self.quants[0]

    @property
    def badge(self) -> FitBadge:
        """The pair's headline badge: its best quantization's."""
        return self.quant(self.best).badge


def with_drafter(pair: Pair, catalog: Catalog, option: DrafterOption) -> Pair:
    """`pair` with its drafter replaced by `option` (catalog assistant, draft model, NextN head, n-gram)."""
    if option.kind in ("assistant", "draft"):
        if option.model_id is None:
            raise TandemError(f"{option.label} is not a catalog model")
        return replace(pair, drafter=catalog.model(option.model_id), drafter_kind=option.kind)
    return replace(pair, drafter=None, drafter_kind=option.kind)


def pair_fit(
    pair: Pair, hw: HardwareInfo, n_ctx: int, *, kv_type: str = "f16", headroom_bytes: int | None = None
) -> PairFit:
    choice = pick_quant(pair, hw, n_ctx=n_ctx, kv_type=kv_type, headroom_bytes=headroom_bytes)
    has_drafter = pair.drafter_kind != "ngram"
    sizes = {q.name: q.planning_bytes for q in pair.target.quants}
    quants = tuple(
        QuantFit(q.name, sizes[q.name], badge_for(r, hw, has_drafter=has_drafter), r)
        for q, r in choice.considered
    )
    return PairFit(pair.id, n_ctx, choice.quant.name if choice.quant else None, quants)


def catalog_fits(
    pairs: Sequence[Pair], hw: HardwareInfo, n_ctx: int, *, kv_type: str = "f16"
) -> tuple[PairFit, ...]:
    """Badges for every pair and quantization at context `n_ctx` (capped at each model's training context)."""
    return tuple(pair_fit(p, hw, n_ctx, kv_type=kv_type) for p in pairs)


# --- files on disk ------------------------------------------------------------------------------------------


def file_badge(
    target: str | os.PathLike[str],
    hw: HardwareInfo,
    n_ctx: int,
    *,
    drafter: str | os.PathLike[str] | None = None,
    drafter_kind: DrafterKind | None = None,
    kv_type: str = "f16",
) -> tuple[FitBadge, FitResult | None]:
    """Badge for a downloaded or imported GGUF (with an optional drafter file) from its metadata. A file the
    estimator cannot read gives an 'unknown' badge with the reason instead of an error."""
    try:
        result = fit((target, drafter), hw, n_ctx=n_ctx, kv_type=kv_type, drafter_kind=drafter_kind)
    except (TandemError, OSError, ValueError, KeyError) as exc:
        return unknown_badge(str(exc), n_ctx), None
    has_drafter = drafter is not None or drafter_kind in ("assistant", "draft", "nextn")
    return badge_for(result, hw, has_drafter=has_drafter), result
