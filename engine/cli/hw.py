"""`tandem hw [--json]`: the GPUs, RAM and cores llama.cpp can use, and whether this build can offload."""

from __future__ import annotations

import argparse
import json
from typing import Any

from engine.fit.hardware import HardwareInfo, detect
from engine.units import format_bytes


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "hw",
        help="show the GPUs, RAM and CPU cores llama.cpp can use",
        description="Lists the devices the bundled llama.cpp sees (through ggml's device API, so exactly "
        "the GPUs it will offload to), free/total memory, RAM and cores, whether the installed "
        "llama-cpp-python was built with GPU offload, and which CPU backend variant it chose for this CPU.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    hw = detect()
    print(json.dumps(hw.to_dict(), indent=1) if args.json else format_hardware(hw))
    return 0


def format_hardware(hw: HardwareInfo) -> str:
    offload = hw.offload_devices
    lines = [
        f"GPU offload: {'yes' if hw.gpu_offload_supported else 'no (this llama-cpp-python is CPU-only)'}"
    ]
    lines.append("Devices (as llama.cpp sees them):")
    for d in hw.devices:
        role = " - layers go here" if d in offload else ""
        lines.append(
            f"  {d.name:<10} {d.description} [{d.type.name}, {d.backend}] "
            f"{format_bytes(d.free_bytes)} free of {format_bytes(d.total_bytes)}{role}"
        )
    lines.append(
        f"RAM: {format_bytes(hw.ram_available_bytes)} available of {format_bytes(hw.ram_total_bytes)}"
    )
    lines.append(f"CPU cores: {hw.cores_physical} physical, {hw.cores_logical} logical")
    lines.append(f"Backends: {', '.join(hw.backends) or 'none'}")
    if hw.cpu_backend is not None:
        cpu = hw.cpu_backend
        chosen = (
            f"libggml-cpu-{cpu.variant}, the best of this build's variants for this CPU"
            if cpu.variant
            else "built in (one variant)"
        )
        features = " ".join(cpu.features) or "the base instruction set"
        lines.append(f"CPU backend: {chosen}; compiled for {features}")
    lines.extend(f"Note: {n}" for n in hw.notes)
    if hw.rebuild_hint:
        lines.append("")
        lines.append(hw.rebuild_hint)
    return "\n".join(lines)
