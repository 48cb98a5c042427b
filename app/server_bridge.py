"""The app's side of the HTTP server: Server ▸ Start puts the loaded model behind engine.serve, and server
requests wait in the same queue as the chat windows' (one engine, one queue).

`WorkerQueue` is the app's `engine.serve.queue.EngineQueue`: the server calls `submit` from its own thread;
a queued signal carries the job into the GUI thread, where it becomes an ordinary `WorkerClient` request
(with the job's CancelToken, so a client that hangs up cancels it wherever it is); the request's events go
back to the server through the job's `emit`. `AppServer` starts and stops the server and reports its address
and live request count; its settings (on/off, address, key, allowed origins) persist in QSettings.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QSettings, Signal, Slot

from app.worker import GenerateJob, Request, WorkerClient
from engine.errors import TandemError
from engine.events import DoneEvent, NoticeEvent, TokenEvent
from engine.inference.api import EngineInfo
from engine.serve.queue import EngineJob, JobFailed, ServedModel

if TYPE_CHECKING:
    from engine.serve.server import ServerThread

log = logging.getLogger(__name__)

SETTINGS_GROUP = "server"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    enabled: bool = False  # running when the app last closed: start it again at launch
    host: str = "127.0.0.1"
    port: int = 8642
    api_key: str = field(default="", repr=False)
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def load(cls) -> ServerSettings:
        q = QSettings()
        base = cls()
        port = str(q.value(f"{SETTINGS_GROUP}/port", base.port))
        origins = q.value(f"{SETTINGS_GROUP}/cors_origins", "")
        return cls(
            enabled=str(q.value(f"{SETTINGS_GROUP}/enabled", "false")).lower() == "true",
            host=str(q.value(f"{SETTINGS_GROUP}/host", base.host)) or base.host,
            port=int(port) if port.isdigit() and int(port) < 65536 else base.port,
            api_key=str(q.value(f"{SETTINGS_GROUP}/api_key", "")),
            cors_origins=tuple(o for o in str(origins or "").split() if o),
        )

    def save(self) -> None:
        q = QSettings()
        q.setValue(f"{SETTINGS_GROUP}/enabled", "true" if self.enabled else "false")
        q.setValue(f"{SETTINGS_GROUP}/host", self.host)
        q.setValue(f"{SETTINGS_GROUP}/port", self.port)
        q.setValue(f"{SETTINGS_GROUP}/api_key", self.api_key)
        q.setValue(f"{SETTINGS_GROUP}/cors_origins", " ".join(self.cors_origins))


def new_api_key() -> str:
    return "tandem-" + secrets.token_urlsafe(24)


class WorkerQueue(QObject):
    """The server's view of the app's worker: submit from any thread, the model that is loaded now."""

    _incoming = Signal(object)  # EngineJob, emitted from the server's thread, delivered in the GUI thread

    def __init__(self, client: WorkerClient) -> None:
        super().__init__()
        self.client = client
        self._model: ServedModel | None = None
        self._live: dict[int, _Forward] = {}  # server requests queued or running, by job id
        self._incoming.connect(self._accept)
        client.modelLoaded.connect(self._on_loaded)
        client.modelUnloaded.connect(self._on_unloaded)
        client.loadStarted.connect(self._on_unloaded)  # no requests for a model that is being replaced
        if client.info is not None:
            self._on_loaded(client.info)

    def abort_all(self) -> None:
        """The server is stopping: cancel its requests and end them now, so no handler waits for an event
        that would have to come through this (then blocked) thread."""
        for forward in list(self._live.values()):
            forward.job.cancel.cancel()
            forward.end(JobFailed("the server is stopping", status=503))

    def detach(self) -> None:
        self.abort_all()
        self.client.modelLoaded.disconnect(self._on_loaded)
        self.client.modelUnloaded.disconnect(self._on_unloaded)
        self.client.loadStarted.disconnect(self._on_unloaded)

    # --- EngineQueue (any thread) -----------------------------------------------------------------------
    def submit(self, job: EngineJob) -> None:
        self._incoming.emit(job)

    def model(self) -> ServedModel | None:
        return self._model  # one reference read: atomic

    # --- GUI thread -------------------------------------------------------------------------------------
    @Slot(object)
    def _on_loaded(self, info: EngineInfo) -> None:
        self._model = ServedModel(info.model_path.stem, info) if info.endpoint is None else None

    @Slot()
    def _on_unloaded(self, *_: object) -> None:
        self._model = None

    @Slot(object)
    def _accept(self, job: EngineJob) -> None:
        if self._model is None:
            job.emit(JobFailed("no model is loaded in the app", status=503))
            return
        request = self.client.submit_job(
            GenerateJob(
                request_id=self.client.new_request_id(),
                messages=job.messages or (),
                params=job.params,
                cancel=job.cancel,
                origin=f"server: {job.origin}",
                prompt=job.prompt,
            )
        )
        self._live[job.id] = _Forward(request, job, lambda: self._live.pop(job.id, None))


class _Forward(QObject):
    """Carries one request's events to the server job; the job always gets exactly one terminal item."""

    def __init__(self, request: Request, job: EngineJob, forget: Callable[[], object]) -> None:
        super().__init__()
        self.request = request
        self.job = job
        self.ended = False
        self._forget = forget
        request.engineEvent.connect(self._on_event)
        request.failed.connect(self._on_failed)
        request.finished.connect(self._on_finished)

    def end(self, item: DoneEvent | JobFailed) -> None:
        if not self.ended:
            self.ended = True
            self.job.emit(item)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        if isinstance(event, DoneEvent):
            self.end(event)
        elif not self.ended and isinstance(event, TokenEvent | NoticeEvent):
            self.job.emit(event)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        # 400, not 500: the worker's failures are mostly the request's own (a prompt longer than the
        # context), and OpenAI clients retry a 5xx with the same request.
        self.end(JobFailed(message, status=400))

    @Slot()
    def _on_finished(self) -> None:
        self.end(JobFailed("cancelled before it started", status=499))  # if nothing ended it before
        self._forget()


class AppServer(QObject):
    """Server ▸ Start/Stop: the loaded model on http://host:port/v1 while the app runs."""

    stateChanged = Signal()  # started or stopped
    activityChanged = Signal(int)  # requests queued or running
    error = Signal(str)

    _activity = Signal(int)  # from the server's thread

    def __init__(self, client: WorkerClient, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.settings = ServerSettings.load()
        self.active = 0
        self._queue: WorkerQueue | None = None
        self._thread: ServerThread | None = None
        self.url = ""
        self._activity.connect(self._on_activity)

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, settings: ServerSettings | None = None) -> bool:
        """Start with `settings` (saved, enabled) or the saved ones; False and `error` when it cannot."""
        from engine.serve.http import Activity, ServerOptions, build_app
        from engine.serve.server import ServerThread, check_bind

        self.stop(remember=False)
        s = settings or self.settings
        try:
            key = s.api_key.strip() or None
            check_bind(s.host, key)
            self._queue = WorkerQueue(self.client)
            options = ServerOptions(api_key=key, cors_origins=s.cors_origins, loopback_only=key is None)
            app = build_app(self._queue, options, Activity(self._activity.emit))
            thread = ServerThread(app, s.host, s.port)
            thread.start()
        except TandemError as exc:
            self._drop_queue()
            self.error.emit(str(exc))
            return False
        self._thread = thread
        self.url = thread.address.url
        self.settings = replace(s, enabled=True)
        self.settings.save()
        log.info("serving on %s/v1", self.url)
        self.stateChanged.emit()
        return True

    def stop(self, *, remember: bool = True) -> None:
        """Stop serving; `remember`: the user stopped it, so it stays off at the next launch."""
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._queue is not None:
                self._queue.abort_all()
            thread.stop()
            self._drop_queue()
            self.url = ""
            self.active = 0
            self.activityChanged.emit(0)
            self.stateChanged.emit()
        if remember and self.settings.enabled:
            self.settings = replace(self.settings, enabled=False)
            self.settings.save()

    def shutdown(self) -> None:
        """The app is closing: stop, and keep "enabled" so the server comes back at the next launch."""
        self.stop(remember=False)

    def _drop_queue(self) -> None:
        if self._queue is not None:
            self._queue.detach()
            self._queue = None

    @Slot(int)
    def _on_activity(self, active: int) -> None:
        self.active = max(0, active)
        self.activityChanged.emit(self.active)
