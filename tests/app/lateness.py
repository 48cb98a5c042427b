"""How late a short Qt timer fires while the event loop runs: the stall a user would feel in the window."""

from __future__ import annotations

import time
from types import TracebackType

from PySide6.QtCore import QTimer


class Lateness:
    """A timer of `interval_ms` that records, per tick, how many ms later than due it fired. Use as a
    context manager around the code whose event-loop stalls are measured."""

    def __init__(self, interval_ms: int = 5) -> None:
        self.interval_ms = interval_ms
        self.late: list[float] = []
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.late.append((now - self._last) * 1000 - self.interval_ms)
        self._last = now

    def __enter__(self) -> Lateness:
        self._last = time.perf_counter()
        self._timer.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._timer.stop()

    @property
    def worst(self) -> float:
        return max(self.late, default=0.0)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.late)
        return ordered[min(int(len(ordered) * share), len(ordered) - 1)] if ordered else 0.0
