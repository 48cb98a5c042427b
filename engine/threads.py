"""How many CPU threads llama.cpp gets when the user does not say."""

from __future__ import annotations

import os


def recommended_threads(
    physical: int | None = None, load: float | None = None, logical: int | None = None
) -> int:
    """llama.cpp's own default, `cpu_get_num_math()` in llama.cpp `common/common.cpp`: the physical cores
    (decode is memory-bound; hyper-threads only contend). When other programs already keep half the CPU busy
    (1-minute load average), one core is left to them: a decode step waits for its slowest thread, and a
    thread that shares its core with another program makes every step wait."""
    physical = physical if physical is not None else _physical_cores()
    logical = logical if logical is not None else (os.cpu_count() or physical)
    load = load if load is not None else _load_average()
    threads = max(1, physical)
    if threads > 1 and load >= logical / 2:
        threads -= 1
    return threads


def _physical_cores() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil may be missing or fail in a sandbox
        n = None
    return max(1, n or os.cpu_count() or 1)


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has no load average
        try:
            import psutil

            return float(psutil.getloadavg()[0])
        except Exception:  # noqa: BLE001
            return 0.0
