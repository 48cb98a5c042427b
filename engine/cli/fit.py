"""`tandem models fit PAIR [--vram-gb N] [--ctx N] [--json]`: will a pair fit this machine, and how to
load it?

PAIR is a catalog pair id, a catalog model id, a local GGUF path, or TARGET+DRAFTER (each a model id or a
path). `add_fit_parser(models_subparsers)` is called by `engine.cli.models`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any

from engine.errors import CatalogError
from engine.fit.hardware import HardwareInfo, detect, fake_hardware
from engine.fit.planner import FitResult, ModelRef, QuantChoice, fit, pick_quant
from engine.store.catalog import Catalog, ModelEntry, Pair, load_catalog
from engine.units import GIB, format_bytes


def add_fit_parser(models_subparsers: Any) -> None:
    p = models_subparsers.add_parser(
        "fit",
        help="check whether a pair fits this machine (verdict, context, GPU layers, drafter placement)",
        description="PAIR: a catalog pair id (see resources/catalog.json), a catalog model id, a local GGUF "
        "path, or TARGET+DRAFTER. Without --quant, a catalog pair gets the best quantization that fits.",
    )
    p.add_argument("pair", metavar="PAIR")
    p.add_argument(
        "--vram-gb",
        type=_gb_list,
        metavar="N[,N...]",
        help="pretend these GPUs (GiB each, all free) instead of detecting; 0 = no GPU",
    )
    p.add_argument("--ram-gb", type=float, help="pretend this much free RAM (GiB)")
    p.add_argument("--ctx", type=int, help="context size wanted (default: 8192, capped at the model's)")
    p.add_argument("--quant", help="target quantization of a catalog model (default: the best that fits)")
    p.add_argument("--kv-type", choices=["f16", "q8_0", "f32"], default="f16", help="KV cache type")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_fit)


def _gb_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GiB numbers separated by commas, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("GPU memory cannot be negative")
    return tuple(v for v in values if v > 0)


def resolve_pair(text: str, catalog: Catalog) -> Pair | tuple[ModelRef, ModelRef | None]:
    """A pair id, else TARGET+DRAFTER, else one model (catalog id or path)."""
    if any(p.id == text for p in catalog.pairs):
        return catalog.pair(text)
    if os.path.exists(text) or "+" not in text:
        return (_model_ref(text, catalog), None)
    target, _, drafter = text.partition("+")
    return (_model_ref(target, catalog), _model_ref(drafter, catalog))


def _model_ref(text: str, catalog: Catalog) -> ModelRef:
    if text in catalog.models:
        return catalog.model(text)
    if os.path.exists(text):
        return text
    raise CatalogError(f"'{text}' is neither a catalog pair or model id nor an existing GGUF file")


def run_fit(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    hw = _hardware(args)
    pair = resolve_pair(args.pair, catalog)
    choice: QuantChoice | None = None
    if isinstance(pair, Pair) and args.quant is None:
        choice = pick_quant(pair, hw, n_ctx=args.ctx, kv_type=args.kv_type)
        result = choice.result or fit(pair, hw, n_ctx=args.ctx, kv_type=args.kv_type)
    elif isinstance(pair, Pair):
        result = fit(pair, hw, n_ctx=args.ctx, quant=args.quant, kv_type=args.kv_type)
    else:
        target, drafter = pair
        quant = args.quant if isinstance(target, ModelEntry) else None
        result = fit((target, drafter), hw, n_ctx=args.ctx, quant=quant, kv_type=args.kv_type)
    if args.json:
        out = result_to_dict(result)
        out["hardware"] = {"fake": hw.fake, "gpus": [d.name for d in hw.offload_devices]}
        if choice is not None:
            out["quant"] = choice.quant.name if choice.quant else None
            out["quants_considered"] = {q.name: r.verdict.value for q, r in choice.considered}
        print(json.dumps(out, indent=1))
    else:
        print(format_result(result, hw, choice))
    return 0


def _hardware(args: argparse.Namespace) -> HardwareInfo:
    if args.vram_gb is None and args.ram_gb is None:
        return detect()
    vram = args.vram_gb
    if vram is None:
        vram = tuple(d.total_bytes / GIB for d in detect().offload_devices)
    return fake_hardware(vram, ram_gb=args.ram_gb)


def result_to_dict(r: FitResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "verdict": r.verdict.value,
        "n_ctx": r.n_ctx,
        "max_ctx": r.max_ctx,
        "n_gpu_layers": r.n_gpu_layers,
        "total_layers": r.total_layers,
        "drafter": r.drafter,
        "drafter_bytes": r.drafter_bytes,
        "choice": r.choice,
        "explanation": r.explanation,
        "notes": list(r.notes),
        "budget": r.budget,
        "options": [asdict(o) for o in r.options],
    }
    if r.estimate is not None:
        e = r.estimate
        out["devices"] = {
            dev: {
                "target": asdict(e.target.on(dev)),
                "drafter": asdict(e.drafter.on(dev)) if e.drafter else None,
                "total": e.device_total(dev),
            }
            for dev in e.devices
        }
    return out


def format_result(r: FitResult, hw: HardwareInfo, choice: QuantChoice | None) -> str:
    gpus = ", ".join(f"{d.name} {format_bytes(d.total_bytes)}" for d in hw.offload_devices) or "none"
    simulated = " (simulated)" if hw.fake else ""
    lines = [f"Hardware{simulated}: GPUs {gpus}; RAM {format_bytes(hw.ram_available_bytes)} free"]
    if choice is not None and choice.quant is not None:
        lines.append(
            f"Quantization: {choice.quant.name} "
            f"(of {', '.join(f'{q.name}={x.verdict.value}' for q, x in choice.considered)})"
        )
    lines.append(f"Verdict: {r.verdict.value} - {r.explanation}")
    if r.verdict.value != "too_large":
        lines.append(
            f"Context: {r.n_ctx} tokens (up to {r.max_ctx} with this placement); "
            f"n_gpu_layers {r.n_gpu_layers} of {r.total_layers}; drafter: {r.drafter}"
        )
    for o in r.options:
        if o.choice != "keep":
            mark = "*" if o.choice == r.choice else ("-" if o.feasible else "x")
            lines.append(f"  {mark} {o.choice}: {o.explanation}")
    lines.extend(f"  {line}" for line in r.breakdown()[1:])
    return "\n".join(lines)
