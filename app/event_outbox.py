"""Engine events from the worker thread to the GUI thread, in batches the GUI takes at its own pace.

One queued signal per event let a fast engine (a remote server streaming a small model, a scripted reply)
post thousands of events before the GUI thread ran again, and Qt delivers every posted event in one go: the
window froze for the whole backlog (about 60 ms per 20 000 tokens here). Instead the worker appends to this
outbox and posts a wake-up only when none is pending; the GUI thread takes at most MAX_BATCH events per
turn and asks for another turn while more wait, so timers and repaints run in between. One FIFO: the order
of events is kept. No Qt here: the caller says how to wake the other thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

MAX_BATCH = 256  # events handled per GUI turn (a token event costs the GUI ~10-20 us: a few ms per turn)


class EventOutbox:
    def __init__(self, wake: Callable[[], None]) -> None:
        """`wake` is called (on the putting thread) when events arrive and no wake-up is pending."""
        self._wake = wake
        self._lock = threading.Lock()
        self._events: deque[tuple[int, object]] = deque()
        self._pending = False  # a wake-up was sent and its take has not emptied the outbox yet

    def put(self, request_id: int, event: object) -> None:
        with self._lock:
            self._events.append((request_id, event))
            if self._pending:
                return
            self._pending = True
        self._wake()

    def take(self, limit: int | None = MAX_BATCH) -> tuple[list[tuple[int, object]], bool]:
        """The oldest events, up to `limit` (None: all), and whether more are waiting: then the caller takes
        again in a later turn (no further wake-up comes until the outbox has been emptied)."""
        with self._lock:
            n = len(self._events) if limit is None else min(limit, len(self._events))
            batch = [self._events.popleft() for _ in range(n)]
            more = bool(self._events)
            if not more:
                self._pending = False
        return batch, more
