"""Short blocking calls (hub search, a repo's file list, fit estimates, GGUF metadata) off the GUI thread.

One `TaskRunner` owns one thread and runs its calls one after another; each result comes back to the GUI
thread through a queued signal and is handed to the caller's callback there. A call submitted under a `key`
supersedes any earlier one with the same key that has not reported yet: its result is dropped, so a slow
estimate for an old slider position never overwrites a newer one.
"""

from __future__ import annotations

import itertools
import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.worker import user_message
from engine.errors import TandemError

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_MS = 20_000  # longer than a hub request's timeout (engine.store.hub.SEARCH_TIMEOUT_S)


class _Worker(QObject):
    done = Signal(int, object)
    failed = Signal(int, str)

    @Slot(int, object)
    def run(self, task_id: int, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message, the thread survives
            if not isinstance(exc, TandemError):
                log.error("background task failed:\n%s", "".join(traceback.format_exception(exc)))
            self.failed.emit(task_id, user_message(exc))
        else:
            self.done.emit(task_id, result)


class TaskRunner(QObject):
    busyChanged = Signal(bool)
    _submit = Signal(int, object)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None], Callable[[str], None] | None]] = {}
        self._latest: dict[str, int] = {}
        self._keys: dict[int, str] = {}
        self._thread = QThread()
        self._thread.setObjectName(name)
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._worker.done.connect(self._on_done)
        self._worker.failed.connect(self._on_failed)
        self._thread.start()

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[str], None] | None = None,
        *,
        key: str | None = None,
    ) -> int:
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)
        if key is not None:
            self._latest[key] = task_id
            self._keys[task_id] = key
        if len(self._callbacks) == 1:
            self.busyChanged.emit(True)
        self._submit.emit(task_id, fn)
        return task_id

    @property
    def busy(self) -> bool:
        return bool(self._callbacks)

    def _take(self, task_id: int) -> tuple[Callable[[Any], None], Callable[[str], None] | None] | None:
        callbacks = self._callbacks.pop(task_id, None)
        if not self._callbacks:
            self.busyChanged.emit(False)
        key = self._keys.pop(task_id, None)
        if key is not None and self._latest.get(key) != task_id:
            return None  # superseded by a newer call with the same key
        if key is not None:
            del self._latest[key]
        return callbacks

    @Slot(int, object)
    def _on_done(self, task_id: int, result: object) -> None:
        callbacks = self._take(task_id)
        if callbacks is not None:
            callbacks[0](result)

    @Slot(int, str)
    def _on_failed(self, task_id: int, message: str) -> None:
        callbacks = self._take(task_id)
        if callbacks is not None and callbacks[1] is not None:
            callbacks[1](message)

    def shutdown(self) -> None:
        """Forget pending callbacks and stop the thread once its current call returns."""
        self._callbacks.clear()
        self._thread.quit()
        self._thread.wait(SHUTDOWN_WAIT_MS)
