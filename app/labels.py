"""Words for engine objects, shared by the windows that show them (no widgets here)."""

from __future__ import annotations

from engine.inference.api import EngineInfo


def describe_model(info: EngineInfo) -> str:
    """'SmolLM2 · drafter: n-gram · CPU · context 4096' for the status bar and the model manager."""
    if info.drafter:
        drafter = f"drafter: {info.drafter}"
    else:
        drafter = f"no drafter ({info.drafter_note})" if info.drafter_note else "no drafter"
    parts = [info.model_name, drafter, info.device]
    if info.n_gpu_layers:
        parts.append(f"{info.n_gpu_layers} layers on GPU")
    parts.append(f"context {info.n_ctx}")
    return " · ".join(p for p in parts if p)
