"""How fast a model is expected to write on this computer, before speculation: the speed class a fit badge
shows in colour, so that "CPU only" tells a 135M model (quick) from a 31B one (a word every few seconds).

Decoding one token reads every weight once, so on the CPU its speed is bounded by memory bandwidth:
tokens/s ≈ efficiency × bandwidth / bytes of weights on the CPU. The bandwidth is measured once per
process (a 64 MiB copy, best of a few: ~50 ms); llama.cpp's decode reaches a fraction of it (EFFICIENCY).
Layers on a GPU are left out: their time is small next to the CPU's; so are embedding tables, read one row per
token. A mixture-of-experts model reads only its active experts: for those the estimate is low. Plain
numbers, no Qt.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Literal

from engine.fit.hardware import HardwareInfo
from engine.units import format_bytes

# Share of the measured copy bandwidth llama.cpp's CPU decode turns into weight reads. Measured here
# (2 shared cores, load average ~5): SmolLM2 135M Q4_1 (98 MB) 31-41 tok/s and Gemma 3 270M Q4_K_M (253 MB)
# 23 tok/s against a 25 GB/s copy, i.e. 0.15-0.25; an idle desktop gets 0.5-0.7 on large models.
EFFICIENCY = 0.4
SIMULATED_BANDWIDTH = 20e9  # bytes/s for simulated hardware (tests, screenshots): results must not vary
FAST_TPS = 15.0  # faster than reading: green
USABLE_TPS = 4.0  # about reading speed: yellow; slower: red
MAX_SHOWN_TPS = 100.0

SpeedClass = Literal["fast", "usable", "slow"]


@dataclass(frozen=True, slots=True)
class SpeedEstimate:
    tokens_per_s: float
    speed_class: SpeedClass
    bandwidth: float  # bytes/s the estimate assumed
    cpu_weight_bytes: int

    @property
    def short(self) -> str:
        """'≈ 42 tok/s', '≈ 2.5 tok/s', '> 100 tok/s' (past that, per-token overheads decide, not memory)."""
        tps = self.tokens_per_s
        if tps > MAX_SHOWN_TPS:
            return f"> {MAX_SHOWN_TPS:.0f} tok/s"
        return f"≈ {tps:.0f} tok/s" if tps >= 10 else f"≈ {tps:.1f} tok/s"

    def explanation(self) -> str:
        gb = self.bandwidth / 1e9
        weights = format_bytes(self.cpu_weight_bytes)
        return (
            f"Expected speed {self.short} before speculation: {weights} of weights read per token from "
            f"memory that moves {gb:.0f} GB/s, at llama.cpp's usual {EFFICIENCY:.0%} of it. Other programs "
            "using the CPU slow it down; speculation speeds it up."
        )


@functools.lru_cache(maxsize=1)
def measured_bandwidth() -> float:
    """Bytes/s one copy moves through memory (read + write), best of five; measured once per process."""
    import numpy as np

    source = np.ones(16 * 2**20, dtype=np.float32)  # 64 MiB: larger than any CPU cache
    target = np.empty_like(source)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.nbytes / max(best, 1e-6)


def bandwidth_for(hw: HardwareInfo) -> float:
    return SIMULATED_BANDWIDTH if hw.fake else measured_bandwidth()


def classify(tokens_per_s: float) -> SpeedClass:
    if tokens_per_s >= FAST_TPS:
        return "fast"
    return "usable" if tokens_per_s >= USABLE_TPS else "slow"


def expected_speed(cpu_weight_bytes: int, hw: HardwareInfo) -> SpeedEstimate | None:
    """None when nothing runs on the CPU (the whole model on a GPU: this says nothing about GPUs)."""
    if cpu_weight_bytes <= 0:
        return None
    bandwidth = bandwidth_for(hw)
    tps = EFFICIENCY * bandwidth / cpu_weight_bytes
    return SpeedEstimate(tps, classify(tps), bandwidth, cpu_weight_bytes)
