"""One engine, one queue. The engine is not thread-safe: exactly one thread owns it, and every request, from
the HTTP server or from a chat window, reaches that thread as an `EngineJob` through an `EngineQueue`.

The server only ever calls `submit` (from its event loop's thread) and reads `model()`; it learns what
happened through the job's `emit` callback, which the owner calls from its own thread, in order: engine events
(TokenEvent, NoticeEvent) and then exactly one terminal item, a `DoneEvent` or a `JobFailed`. Cancelling is
the job's CancelToken, checked by the engine before every decode (and by the queue before a job starts).

`EngineThread` is the owner for `tandem serve`: a thread and a FIFO around one loaded engine. The app's worker
(app.server_bridge) implements the same protocol over its own job queue, so server requests wait in line with
the chat windows' and show up in the app's queue.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from engine.config import CancelToken, ChatMessage, GenerationParams
from engine.errors import TandemError
from engine.events import DoneEvent, Event
from engine.inference.api import ChatEngineAPI, EngineInfo

log = logging.getLogger("tandem.serve")

_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class JobFailed:
    """A job's terminal item when it did not finish: a short message for the client, never a traceback."""

    message: str
    status: int = 500  # 503: no model loaded; 400: the request cannot run on this model (too long)


JobItem = Event | JobFailed
Emit = Callable[[JobItem], None]


@dataclass(eq=False)
class EngineJob:
    """One request for the engine's owner: a chat (messages) or a raw-text continuation (prompt)."""

    params: GenerationParams
    emit: Emit
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    origin: str = "server"  # who asked, for the app's queue ("POST /v1/chat/completions from 127.0.0.1")
    cancel: CancelToken = field(default_factory=CancelToken)
    id: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True, slots=True)
class ServedModel:
    """What `/v1/models` lists: the loaded model under the name clients use."""

    id: str
    info: EngineInfo


class EngineQueue(Protocol):
    def submit(self, job: EngineJob) -> None:
        """Queue `job` (thread-safe, returns at once)."""
        ...

    def model(self) -> ServedModel | None:
        """The model requests run on; None while none is loaded (thread-safe)."""
        ...


def run_job(engine: ChatEngineAPI, job: EngineJob) -> None:
    """Run one job on `engine` in the calling (owning) thread; whatever happens, the job gets exactly one
    terminal item."""
    if job.cancel.cancelled:
        job.emit(JobFailed("cancelled before it started", status=499))
        return
    try:
        if job.prompt is not None:
            events = engine.complete(job.prompt, job.params, job.cancel)
        else:
            events = engine.chat(job.messages or (), job.params, job.cancel)
        done = False
        for event in events:
            done = done or isinstance(event, DoneEvent)
            job.emit(event)
        if not done:
            job.emit(JobFailed("the engine ended without a result"))
    except TandemError as exc:
        job.emit(JobFailed(str(exc), status=400))
    except Exception as exc:  # noqa: BLE001 - one failed request must not take the server down
        log.error("request %d failed:\n%s", job.id, "".join(traceback.format_exception(exc)))
        job.emit(JobFailed(f"internal error in the engine ({type(exc).__name__})"))


class EngineThread:
    """Owns one loaded engine for `tandem serve`: jobs run one at a time, in the order they came."""

    def __init__(self, engine: ChatEngineAPI, model_id: str | None = None) -> None:
        self._engine = engine
        self._model = ServedModel(model_id or engine.info.model_path.stem, engine.info)
        self._jobs: queue.Queue[EngineJob | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="tandem-engine", daemon=True)
        self._thread.start()

    def submit(self, job: EngineJob) -> None:
        with self._lock:
            self._waiting += 1
        self._jobs.put(job)

    def model(self) -> ServedModel | None:
        return self._model

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        with self._lock:
            return self._waiting

    def close(self, timeout: float = 30.0) -> None:
        """Finish the running job, refuse the waiting ones, and close the engine."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                with self._lock:
                    self._waiting -= 1
                job.emit(JobFailed("the server is shutting down", status=503))
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():  # still inside a decode: freeing the model under it would crash
            log.warning("the engine is still busy; leaving it to the end of the process")
            return
        self._engine.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                run_job(self._engine, job)
            finally:
                with self._lock:
                    self._waiting -= 1
