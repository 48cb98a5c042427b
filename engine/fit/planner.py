"""Will a target + drafter pair fit this machine, and how should it be loaded?

`estimate()` gives the bytes per device for one setting (see engine.fit.memory for the model of
llama.cpp's allocations). `fit()` searches the settings: everything on the GPU, else fewer GPU layers,
else the CPU; the largest context that still fits; and, when target and drafter do not both fit, the
choices (smaller context, drafter on the CPU, no drafter) with a recommendation. `pick_quant()` chooses the
best catalog quantization that fits with headroom.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.fit.hardware import HardwareInfo
from engine.fit.memory import CPU, ContextSettings, DrafterKind, MemoryEstimate, estimate_specs
from engine.fit.model_spec import ModelSpec, spec_from_catalog, spec_from_gguf
from engine.store.catalog import ModelEntry, Pair, Quant
from engine.units import GIB, MIB, format_bytes

DEFAULT_CTX = 8192  # context asked for when the caller names none (capped at the model's training context)
MIN_USEFUL_CTX = 2048  # below this, shrinking the context to keep a drafter is not worth offering
GPU_HEADROOM = (0.05, 512 * MIB)  # keep max(5 %, 512 MiB) of each GPU free: driver, other apps, fragmentation
RAM_HEADROOM = (0.10, 1 * GIB)
SMALL_DRAFTER = 0.10  # a drafter this share of the GPU budget or less stays on the GPU under partial offload

ModelRef = ModelSpec | ModelEntry | str | os.PathLike[str]


class Verdict(enum.Enum):
    FITS_GPU = "fits_gpu"  # every layer, the KV cache and the drafter on the GPU(s)
    PARTIAL = "partial"  # n_gpu_layers on the GPU(s), the rest on the CPU
    CPU_ONLY = "cpu_only"  # no usable GPU, or not even one layer fits it
    TOO_LARGE = "too_large"  # does not fit in RAM either, even without drafter at the smallest context


DrafterChoice = Literal["keep", "smaller_context", "drafter_on_cpu", "no_drafter"]
Placement = Literal["gpu", "cpu", "none"]


@dataclass(frozen=True)
class Option:
    """One way to load the pair when target and drafter do not both fit as asked."""

    choice: DrafterChoice
    feasible: bool
    n_ctx: int
    n_gpu_layers: int
    drafter: Placement
    explanation: str


@dataclass(frozen=True)
class FitResult:
    verdict: Verdict
    n_ctx: int  # the context the plan is for
    max_ctx: int  # the largest context this placement allows (0 if nothing fits)
    n_gpu_layers: int  # pass to llama.cpp (n_layer_all + 1 = everything, 0 = CPU)
    total_layers: int  # n_layer_all + 1: the n_gpu_layers that puts everything on the GPU
    drafter: Placement
    drafter_bytes: int  # the drafter's share: weights + own KV + its context's buffers
    estimate: MemoryEstimate | None  # at n_ctx with this placement (None when nothing fits)
    budget: dict[str, int]  # usable bytes per device, headroom taken off
    options: tuple[Option, ...] = ()
    choice: DrafterChoice = "keep"
    explanation: str = ""
    notes: tuple[str, ...] = field(default=())
    n_nextn: int = 0  # embedded NextN blocks: counted by llama.cpp's n_gpu_layers, not shown to people

    @property
    def shown_layers(self) -> int:
        """The layers a person counts: the trunk (block_count - nextn_predict_layers) plus the output layer,
        as llama.cpp logs "offloaded N/M layers" for a model without NextN blocks."""
        return self.total_layers - self.n_nextn

    @property
    def shown_gpu_layers(self) -> int:
        """Of `shown_layers`, those on the GPU. llama.cpp offloads from the end: the output layer first,
        then the NextN blocks (stored last), then the trunk from its last block down."""
        on_gpu = min(self.n_gpu_layers, self.total_layers)
        return on_gpu - min(self.n_nextn, max(on_gpu - 1, 0))

    def breakdown(self) -> list[str]:
        """Lines for a tooltip: what goes where."""
        if self.estimate is None:
            return [self.explanation]
        e = self.estimate
        lines = [f"context {self.n_ctx} tokens, KV {e.settings.kv_type}, n_gpu_layers {self.n_gpu_layers}"]
        for dev in e.devices:
            parts = memory_parts(e, dev)
            if parts is None:
                continue
            lines.append(
                f"{dev}: {format_bytes(e.device_total(dev))} of "
                f"{format_bytes(self.budget.get(dev, 0))} usable "
                f"({', '.join(parts)})"
            )
        return lines + list(self.notes)


def _shown(ngl: int, p: _Planner) -> int:
    """n_gpu_layers in the layers a person counts (FitResult.shown_gpu_layers)."""
    on_gpu = min(ngl, p.full)
    return on_gpu - min(p.target.n_nextn, max(on_gpu - 1, 0))


def memory_parts(e: MemoryEstimate, dev: str) -> list[str] | None:
    """What the pair needs on one device, part by part ("weights 1.60 GiB", "KV ...", "drafter ...");
    None when nothing of it lands there."""
    t, d = e.target.on(dev), e.drafter.on(dev) if e.drafter else None
    if t.total == 0 and (d is None or d.total == 0):
        return None
    parts = [f"weights {format_bytes(t.weights)}", f"KV {format_bytes(t.kv)}"]
    if t.state:
        parts.append(f"recurrent state {format_bytes(t.state)}")
    parts.append(f"compute {format_bytes(t.compute + t.output)}")
    if d is not None and d.total:
        parts.append(f"drafter {format_bytes(d.total)}")
    return parts


def load_spec(model: ModelRef, quant: Quant | str | None = None) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, ModelEntry):
        return spec_from_catalog(model, quant)
    return spec_from_gguf(model)


def _drafter_kind(target: ModelSpec, drafter: ModelSpec | None, kind: DrafterKind | None) -> DrafterKind:
    if kind is not None:
        return kind
    if drafter is not None:
        return "assistant" if drafter.is_assistant else "draft"
    return "nextn" if target.n_nextn else "none"


def estimate(
    model: ModelRef,
    drafter: ModelRef | None = None,
    *,
    n_ctx: int = 4096,
    kv_type: str = "f16",
    n_gpu_layers: int = 0,
    drafter_kind: DrafterKind | None = None,
    drafter_gpu_layers: int | None = None,
    hardware: HardwareInfo | None = None,
    settings: ContextSettings | None = None,
    quant: str | None = None,
    drafter_quant: str | None = None,
) -> MemoryEstimate:
    """Bytes per device for `model` (a GGUF path, a catalog entry or a ModelSpec) with an optional drafter.
    drafter_kind defaults to what the files say: an assistant, a draft model, the model's own NextN head
    (when it has one and no drafter is given) or none. n_gpu_layers as for llama.cpp (-1 = all); with
    n_gpu_layers > 0 and no `hardware`, one unnamed "GPU" is assumed. `quant`/`drafter_quant` pick the
    quantization of a catalog entry (default: its first)."""
    target = load_spec(model, quant)
    draft = load_spec(drafter, drafter_quant) if drafter is not None else None
    s = replace(settings or ContextSettings(), n_ctx=n_ctx, kv_type=kv_type)
    gpus = hardware.offload_devices if hardware else ()
    names = tuple(d.name for d in gpus) or (("GPU",) if n_gpu_layers != 0 else ())
    free = tuple(d.free_bytes for d in gpus)
    return estimate_specs(
        target,
        draft,
        _drafter_kind(target, draft, drafter_kind),
        s,
        n_gpu_layers=n_gpu_layers,
        drafter_gpu_layers=drafter_gpu_layers,
        gpus=names,
        gpu_free=free,
    )


# --- planning -----------------------------------------------------------------------------------------------


def budgets(hw: HardwareInfo, headroom_bytes: int | None = None) -> dict[str, int]:
    """Usable bytes per device: free memory minus headroom (`headroom_bytes` on every device, or by default
    max(5 %, 512 MiB) of each GPU and max(10 %, 1 GiB) of RAM)."""
    out = {}
    for d in hw.offload_devices:
        keep = (
            headroom_bytes
            if headroom_bytes is not None
            else max(int(d.total_bytes * GPU_HEADROOM[0]), GPU_HEADROOM[1])
        )
        out[d.name] = max(0, d.free_bytes - keep)
    keep = (
        headroom_bytes
        if headroom_bytes is not None
        else max(int(hw.ram_total_bytes * RAM_HEADROOM[0]), RAM_HEADROOM[1])
    )
    out[CPU] = max(0, hw.ram_available_bytes - keep)
    return out


@dataclass(frozen=True)
class _Planner:
    target: ModelSpec
    drafter: ModelSpec | None
    kind: DrafterKind
    settings: ContextSettings
    budget: dict[str, int]
    gpus: tuple[str, ...]
    gpu_free: tuple[int, ...]

    @property
    def full(self) -> int:
        return self.target.n_layer_all + 1

    def run(self, n_ctx: int, ngl: int, drafter: Placement) -> MemoryEstimate:
        kind: DrafterKind = self.kind if drafter != "none" else "none"
        dgl = (
            None if kind != "draft" and kind != "assistant" else (-1 if drafter == "gpu" and self.gpus else 0)
        )
        return estimate_specs(
            self.target,
            self.drafter,
            kind,
            replace(self.settings, n_ctx=n_ctx),
            n_gpu_layers=ngl,
            drafter_gpu_layers=dgl,
            gpus=self.gpus if ngl or drafter == "gpu" else (),
            gpu_free=self.gpu_free,
        )

    def fits(self, n_ctx: int, ngl: int, drafter: Placement) -> bool:
        e = self.run(n_ctx, ngl, drafter)
        return all(total <= self.budget.get(dev, 0) for dev, total in e.by_device.items())

    def max_ctx(self, ngl: int, drafter: Placement, limit: int) -> int:
        """Largest multiple of 256 (<= limit) that fits; 0 if not even 256 does."""
        lo, hi = 0, max(limit // 256, 0)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits(mid * 256, ngl, drafter):
                lo = mid
            else:
                hi = mid - 1
        return lo * 256

    def max_gpu_layers(self, n_ctx: int, drafter: Placement) -> int:
        lo, hi = 0, self.full
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.fits_gpu_only(n_ctx, mid, drafter):
                lo = mid
            else:
                hi = mid - 1
        return lo

    def fits_gpu_only(self, n_ctx: int, ngl: int, drafter: Placement) -> bool:
        e = self.run(n_ctx, ngl, drafter)
        return all(total <= self.budget.get(dev, 0) for dev, total in e.by_device.items() if dev != CPU)


def fit(
    pair: Pair | tuple[ModelRef, ModelRef | None] | ModelRef,
    hardware: HardwareInfo,
    *,
    n_ctx: int | None = None,
    quant: str | None = None,
    drafter_quant: str | None = None,
    kv_type: str = "f16",
    settings: ContextSettings | None = None,
    drafter_kind: DrafterKind | None = None,
    headroom_bytes: int | None = None,
) -> FitResult:
    """Plan how to load `pair` (a catalog Pair, a (target, drafter) tuple or one model) on `hardware`.
    n_ctx None asks for min(8192, the model's training context)."""
    target, drafter, kind = _resolve(pair, quant, drafter_quant, drafter_kind)
    limit = target.n_ctx_train or 131072
    want = min(n_ctx or min(DEFAULT_CTX, limit), limit)
    gpus = hardware.offload_devices
    p = _Planner(
        target,
        drafter,
        kind,
        replace(settings or ContextSettings(), kv_type=kv_type),
        budgets(hardware, headroom_bytes),
        tuple(d.name for d in gpus),
        tuple(d.free_bytes for d in gpus),
    )
    has_drafter = kind in ("assistant", "draft", "nextn")
    notes = list(target.notes) + (list(drafter.notes) if drafter else [])
    if n_ctx and n_ctx > limit:
        notes.append(f"context capped at the model's training context, {limit} tokens")
    if hardware.rebuild_hint:
        notes.append(hardware.rebuild_hint.splitlines()[0])

    def result(
        verdict: Verdict,
        ngl: int,
        placement: Placement,
        explanation: str,
        options: Sequence[Option] = (),
        choice: DrafterChoice = "keep",
        ctx: int = want,
    ) -> FitResult:
        e = p.run(ctx, ngl, placement)
        swa_note = _swa_full_note(p, e, ctx, ngl, placement)
        if swa_note:
            notes.append(swa_note)
        return FitResult(
            verdict,
            ctx,
            p.max_ctx(ngl, placement, limit),
            ngl,
            p.full,
            placement,
            e.drafter.total if e.drafter else 0,
            e,
            p.budget,
            tuple(options),
            choice,
            explanation,
            tuple(dict.fromkeys(notes + list(e.notes))),
            p.target.n_nextn,
        )

    d_on: Placement = "gpu" if has_drafter else "none"
    if gpus:
        if p.fits(want, p.full, d_on):
            return result(
                Verdict.FITS_GPU,
                p.full,
                d_on,
                "Everything fits on the GPU" + (" with the drafter." if has_drafter else "."),
            )
        if has_drafter and p.fits(want, p.full, "none"):
            options = _options(p, want, limit)
            chosen = next(o for o in options if o.feasible and o.choice != "keep")
            return result(
                Verdict.FITS_GPU,
                chosen.n_gpu_layers,
                chosen.drafter,
                f"The target fits on the GPU but not together with the drafter: {chosen.explanation}",
                options,
                chosen.choice,
                chosen.n_ctx,
            )
        placement: Placement = "none"
        if has_drafter:
            share = p.run(want, p.full, d_on)
            gpu_budget = sum(v for k, v in p.budget.items() if k != CPU)
            small = share.drafter is not None and share.drafter.total <= SMALL_DRAFTER * gpu_budget
            placement = "gpu" if small or kind == "nextn" else "cpu"
        ngl = p.max_gpu_layers(want, placement)
        if ngl > 0 and p.fits(want, ngl, placement):
            return result(
                Verdict.PARTIAL,
                ngl,
                placement,
                f"{_shown(ngl, p)} of {p.full - p.target.n_nextn} layers fit on the GPU; "
                "the rest runs on the CPU"
                + (f" (drafter on the {placement.upper()})" if has_drafter else "")
                + ".",
            )
    if p.fits(want, 0, "cpu" if has_drafter else "none"):
        why = "No GPU offload available" if not gpus else "Not even one layer fits on the GPU"
        return result(
            Verdict.CPU_ONLY, 0, "cpu" if has_drafter else "none", f"{why}: everything runs on the CPU."
        )
    if has_drafter and p.fits(want, 0, "none"):
        return result(
            Verdict.CPU_ONLY,
            0,
            "none",
            "Runs on the CPU only without the drafter (RAM is too small for both).",
            choice="no_drafter",
        )
    # nothing fits at the asked context: the largest context that does, without drafter
    for ngl in ([p.full, p.max_gpu_layers(256, "none")] if gpus else []) + [0]:
        ctx = p.max_ctx(ngl, "none", want)
        if ctx >= 256:
            verdict = Verdict.FITS_GPU if ngl == p.full else Verdict.PARTIAL if ngl > 0 else Verdict.CPU_ONLY
            return result(
                verdict,
                ngl,
                "none",
                f"Fits only with a {ctx}-token context and no drafter.",
                choice="smaller_context",
                ctx=ctx,
            )
    need = p.run(256, 0, "none").cpu_total
    return FitResult(
        Verdict.TOO_LARGE,
        want,
        0,
        0,
        p.full,
        "none",
        0,
        None,
        p.budget,
        explanation=(
            f"Too large: needs at least {format_bytes(need)} of RAM, {format_bytes(p.budget[CPU])} usable."
        ),
        notes=tuple(notes),
    )


def _swa_full_note(p: _Planner, e: MemoryEstimate, n_ctx: int, ngl: int, placement: Placement) -> str | None:
    """llama.cpp keeps full-size caches for sliding-window layers unless swa_full is turned off: say what
    turning it off would save, since for Gemma-style models it is most of the KV cache."""
    if (
        not p.settings.swa_full
        or not any(la.is_swa and la.has_kv for la in p.target.layers)
        or not p.target.n_swa
    ):
        return None
    capped = replace(p, settings=replace(p.settings, swa_full=False)).run(n_ctx, ngl, placement)
    full_kv = sum(u.kv for u in e.target.by_device.values())
    capped_kv = sum(u.kv for u in capped.target.by_device.values())
    if full_kv - capped_kv < 64 * MIB:
        return None
    return (
        f"KV cache {format_bytes(full_kv)} with full-size sliding-window caches "
        "(llama.cpp's default, swa_full); "
        f"{format_bytes(capped_kv)} with swa_full off (window {p.target.n_swa} + n_ubatch cells)"
    )


def _options(p: _Planner, want: int, limit: int) -> list[Option]:
    """Target alone fits fully on the GPU at `want`, target + drafter do not. Options in order of preference;
    the first feasible one (after "keep") is the recommendation."""
    out: list[Option] = [
        Option("keep", False, want, p.full, "gpu", "target + drafter do not fit at this context")
    ]
    smaller = p.max_ctx(p.full, "gpu", want)
    ok = smaller >= min(want, max(MIN_USEFUL_CTX, want // 2))
    out.append(
        Option(
            "smaller_context",
            ok,
            smaller,
            p.full,
            "gpu",
            f"shrink the context to {smaller} tokens to keep the drafter on the GPU",
        )
    )
    if p.kind == "draft":  # a separate small model can run on the CPU; MTP heads share the target's device
        ok_cpu = p.fits(want, p.full, "cpu")
        out.append(
            Option(
                "drafter_on_cpu",
                ok_cpu,
                want,
                p.full,
                "cpu",
                "run the draft model on the CPU (slower drafting, full context)",
            )
        )
    out.append(
        Option(
            "no_drafter",
            True,
            want,
            p.full,
            "none",
            "load without the drafter (n-gram lookup still drafts) and keep the full context",
        )
    )
    return out


def _resolve(
    pair: Pair | tuple[ModelRef, ModelRef | None] | ModelRef,
    quant: str | None,
    drafter_quant: str | None,
    kind: DrafterKind | None,
) -> tuple[ModelSpec, ModelSpec | None, DrafterKind]:
    if isinstance(pair, Pair):
        target = spec_from_catalog(pair.target, quant)
        drafter = spec_from_catalog(pair.drafter, drafter_quant) if pair.drafter else None
        return target, drafter, kind or ("none" if pair.drafter_kind == "ngram" else pair.drafter_kind)
    if isinstance(pair, tuple):
        t = load_spec(pair[0], quant)
        d = load_spec(pair[1], drafter_quant) if pair[1] is not None else None
        return t, d, _drafter_kind(t, d, kind)
    t = load_spec(pair, quant)
    return t, None, _drafter_kind(t, None, kind)


# --- quantization choice ------------------------------------------------------------------------------------

QUALITY_FLOOR_BPW = 4.0  # below ~4 bits per weight quality drops fast: only chosen when nothing else fits


@dataclass(frozen=True)
class QuantChoice:
    quant: Quant | None
    result: FitResult | None
    considered: tuple[tuple[Quant, FitResult], ...]
    explanation: str


def pick_quant(
    pair: Pair,
    hardware: HardwareInfo,
    *,
    n_ctx: int | None = None,
    kv_type: str = "f16",
    settings: ContextSettings | None = None,
    headroom_bytes: int | None = None,
) -> QuantChoice:
    """The best quantization of the pair's target for this machine: the highest-precision one that keeps
    everything (drafter included) on the GPU; else the one that puts the largest share of layers on the GPU
    (lower precision runs faster there); on the CPU, the smallest one at or above ~4 bits per weight."""
    results = tuple(
        (
            q,
            fit(
                pair,
                hardware,
                n_ctx=n_ctx,
                quant=q.name,
                kv_type=kv_type,
                settings=settings,
                headroom_bytes=headroom_bytes,
            ),
        )
        for q in pair.target.quants
    )

    def bpw(q: Quant) -> float:
        return q.bits_per_weight or 16.0

    def key(item: tuple[Quant, FitResult]) -> tuple[float, ...]:
        q, r = item
        above_floor = 1.0 if bpw(q) >= QUALITY_FLOOR_BPW else 0.0
        if r.verdict == Verdict.FITS_GPU:
            return (3, r.choice == "keep", above_floor, bpw(q))
        if r.verdict == Verdict.PARTIAL:
            return (2, above_floor, r.n_gpu_layers / r.total_layers, bpw(q))
        if r.verdict == Verdict.CPU_ONLY:
            return (1, above_floor, -bpw(q), 0)
        return (0, 0, 0, 0)

    best_q, best_r = max(results, key=key)
    if best_r.verdict == Verdict.TOO_LARGE:
        return QuantChoice(None, None, results, "No quantization of this model fits this machine.")
    return QuantChoice(best_q, best_r, results, f"{best_q.name}: {best_r.explanation}")
