"""The one inference worker and its GUI-side facade.

`InferenceWorker` is a QObject living on its own QThread. It owns the loaded engine (target + drafter) and
runs the engine's blocking event iterator there; jobs reach it through queued signals and every engine event
leaves it, unchanged (frozen dataclasses), through its outbox (app.event_outbox: the GUI takes them in
batches, so a fast engine cannot flood the event loop). It never touches widgets.

`WorkerClient` lives in the GUI thread and is shared by every chat window. It keeps the job queue itself and
hands the worker one job at a time, so a queued request can be shown as "waiting" and cancelled before it
starts; a running generation is cancelled through its `CancelToken`, which the engine checks every step.

Loading is a transaction: the new model is opened while the current one keeps serving, and only a model
that opened replaces it; a failed load changes nothing. A drafter that is refused (a corrupt or mismatched
file) does not cost the target: it loads without speculation and says why.

Besides replies, the worker runs A/B jobs (engine.measure.ab: the same prompt plain and speculative,
alternating for several rounds) and, given a ProfileStore, seeds a loaded pair's cost curve from it (a short
calibration on the pair's first load on this machine), folds every finished generation and every clean A/B
into the pair's profile (a disturbed A/B is left out), and announces the predicted speedup
(`predictionChanged`), before `loaded` for a model whose pair it already knows.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from app.event_outbox import MAX_BATCH, EventOutbox
from engine.config import CancelToken, ChatMessage, GenerationParams, LoadConfig
from engine.errors import (
    IncompatibleDrafterError,
    ModelCrashError,
    ModelFileError,
    ModelLoadError,
    TandemError,
)
from engine.events import DoneEvent
from engine.inference.api import ChatEngineAPI, EngineFactory, EngineInfo
from engine.measure.ab import ABReport, ABResult
from engine.measure.pair_profile import PairKey, Prediction, ProfileStore, pair_key
from engine.stats import GenerationStats
from engine.text import one_line, shown

log = logging.getLogger(__name__)


def _pair_of(config: LoadConfig, info: EngineInfo) -> PairKey | None:
    """The pair whose profile this engine learns. A remote server (engine.remote) is no pair of files this
    machine could learn a profile for, and an engine without a drafter has nothing to learn."""
    return pair_key(config, info) if info.drafter and info.endpoint is None else None


def default_engine_factory(
    config: LoadConfig, progress: Callable[[float], bool] | None = None
) -> ChatEngineAPI:
    """The real engine; progress(fraction) returns False to cancel the load."""
    # Imported late: loading llama.cpp is slow and needs the engine.
    from engine.inference.session import ChatEngine

    return ChatEngine.load(config, progress)


def user_message(exc: BaseException) -> str:
    """What the user is shown for an error: the engine's own words (bounded and escaped by TandemError),
    never a traceback."""
    if isinstance(exc, TandemError):
        return exc.for_gui()
    if isinstance(exc, MemoryError):
        return "Out of memory. Try a smaller model, a shorter context or fewer GPU layers."
    return one_line(
        f"Unexpected error in the engine ({type(exc).__name__}: {shown(str(exc), 200)}). "
        "Details were written to the log."
    )


def error_details(exc: BaseException) -> str:
    """The longer story behind an error (llama.cpp's last log lines), for the dialog's Details."""
    return exc.details or "" if isinstance(exc, TandemError) else ""


def drafter_files(config: LoadConfig) -> set[Path]:
    return {p for p in (config.draft_model_path, config.assistant_path) if p is not None}


def refused_drafter(config: LoadConfig, exc: BaseException) -> bool:
    """Whether a failed load failed because of its drafter (the target alone may still load)."""
    if (
        config.drafter == "none"
        or not drafter_files(config)
        and not isinstance(exc, IncompatibleDrafterError)
    ):
        return False
    if isinstance(exc, IncompatibleDrafterError):
        return True
    path = getattr(exc, "path", None) if isinstance(exc, ModelFileError | ModelLoadError) else None
    return path is not None and path in drafter_files(config)


_MEMORY_WORDS = re.compile(r"alloc|out of memory|not enough memory|insufficient memory", re.IGNORECASE)


def short_of_memory(exc: BaseException) -> bool:
    """A load that may succeed once the current model is gone (llama.cpp could not allocate)."""
    if isinstance(exc, MemoryError):
        return True
    return (
        isinstance(exc, ModelLoadError)
        and not isinstance(exc, ModelCrashError)
        and bool(_MEMORY_WORDS.search(f"{exc} {exc.details or ''}"))
    )


@dataclass(eq=False)
class LoadJob:
    config: LoadConfig
    cancel: CancelToken = field(default_factory=CancelToken)


@dataclass(eq=False)
class GenerateJob:
    request_id: int
    messages: tuple[ChatMessage, ...]
    params: GenerationParams
    cancel: CancelToken = field(default_factory=CancelToken)
    origin: str = "chat"  # who asked: a chat window, or the server ("server: /v1/chat/completions from ...")
    prompt: str | None = None  # raw text to continue without the chat template (the server's /v1/completions)


@dataclass(eq=False)
class ABJob(GenerateJob):
    """Re-run `messages` plainly, then speculatively (engine.measure.ab); a request whose events are ABStep,
    then one ABResult unless cancelled."""


class InferenceWorker(QObject):
    loadProgress = Signal(float)
    loaded = Signal(object)  # EngineInfo
    loadFailed = Signal(str, str)  # message, details (llama.cpp's log; may be empty)
    unloaded = Signal()
    eventsReady = Signal()  # `outbox` has events (TokenEvent | NoticeEvent | DoneEvent | A/B items) to take
    generationFailed = Signal(int, str)
    generationFinished = Signal(int)  # always the last signal of a request
    predictionChanged = Signal(object)  # Prediction | None: expected speedup of the loaded pair
    jobDone = Signal()  # the worker is free for the next job

    def __init__(self, factory: EngineFactory, profiles: ProfileStore | None = None) -> None:
        super().__init__()
        self._factory = factory
        self._engine: ChatEngineAPI | None = None
        self._config: LoadConfig | None = None  # of the loaded engine (to reload it after a failed swap)
        self._profiles = profiles
        self._pair: PairKey | None = None
        self.outbox = EventOutbox(self.eventsReady.emit)

    @Slot(object)
    def load(self, job: LoadJob) -> None:
        """Open job.config next to the current model; swap only once it is ready (see the module doc)."""

        def progress(fraction: float) -> bool:
            self.loadProgress.emit(fraction)
            return not job.cancel.cancelled

        try:
            engine = self._open(job.config, progress)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message, the worker survives
            if job.cancel.cancelled:
                self.loadFailed.emit("Loading was cancelled.", "")
            else:
                self._log(exc)
                self.loadFailed.emit(user_message(exc), error_details(exc))
            if self._engine is None:
                self.unloaded.emit()  # a rollback that could not reload the old model: say there is none
        else:
            old, self._engine, self._config = self._engine, engine, job.config
            if old is not None:
                old.close()
            self._pair = _pair_of(job.config, engine.info)
            self._prepare_pair(engine)
            self._announce_prediction()  # before "loaded": the views find it known when the model appears
            self.loaded.emit(engine.info)
        finally:
            self.jobDone.emit()

    def _open(self, config: LoadConfig, progress: Callable[[float], bool]) -> ChatEngineAPI:
        """The engine for `config`; the current one stays loaded unless memory runs short, in which case it
        is closed, the new one tried again and, if that fails too, the old one reloaded."""
        try:
            return self._open_or_target_alone(config, progress)
        except BaseException as exc:
            if self._engine is None or self._config is None or not short_of_memory(exc):
                raise
            old_config = self._config
            log.info("not enough memory for two models: closing the current one to load the new one")
        self._close_engine()
        try:
            return self._open_or_target_alone(config, progress)
        except BaseException:
            try:
                self._engine, self._config = self._factory(old_config, None), old_config
                self._pair = _pair_of(old_config, self._engine.info)
            except BaseException as again:  # noqa: BLE001 - reported as "no model" by load()
                log.error("could not reload the previous model: %s", again)
            raise

    def _open_or_target_alone(self, config: LoadConfig, progress: Callable[[float], bool]) -> ChatEngineAPI:
        try:
            return self._factory(config, progress)
        except BaseException as exc:
            if not refused_drafter(config, exc):
                raise
            reason = user_message(exc)
        alone = replace(config, drafter="none", draft_model_path=None, assistant_path=None)
        engine = self._factory(alone, progress)
        engine.info = replace(engine.info, drafter_note=shown(f"the drafter was refused: {reason}", 240))
        return engine

    @Slot()
    def unload(self) -> None:
        self._close_engine()
        self.unloaded.emit()
        self.jobDone.emit()

    @Slot(object)
    def generate(self, job: GenerateJob) -> None:
        self._serve(job.request_id, lambda engine: self._chat(engine, job))

    @Slot(object)
    def ab(self, job: ABJob) -> None:
        self._serve(job.request_id, lambda engine: self._ab(engine, job))

    def _serve(self, request_id: int, work: Callable[[ChatEngineAPI], None]) -> None:
        """Run one request on the loaded engine. Whatever happens, the request ends with
        generationFinished and the worker announces it is free: a failure becomes generationFailed."""
        try:
            if self._engine is None:
                raise TandemError("No model is loaded.")
            work(self._engine)
        except BaseException as exc:  # noqa: BLE001
            self._log(exc)
            self.generationFailed.emit(request_id, user_message(exc))
        finally:
            self.generationFinished.emit(request_id)
            self.jobDone.emit()

    def _chat(self, engine: ChatEngineAPI, job: GenerateJob) -> None:
        if job.prompt is not None:
            events = engine.complete(job.prompt, job.params, job.cancel)
        else:
            events = engine.chat(job.messages, job.params, job.cancel)
        for event in events:
            self.outbox.put(job.request_id, event)
            if isinstance(event, DoneEvent):
                self._learn(event.stats)

    def _ab(self, engine: ChatEngineAPI, job: ABJob) -> None:
        from engine.measure.ab import iter_ab

        remote_ab = getattr(engine, "ab", None)  # a remote server runs its own (engine.remote.ab)
        if remote_ab is not None:
            for item in remote_ab(job.messages, job.params, job.cancel):
                self.outbox.put(job.request_id, item)
            return
        for item in iter_ab(engine, job.messages, job.params, job.cancel):
            self.outbox.put(job.request_id, item)
            # A disturbed A/B (its runs disagree: another program took the CPU) teaches nothing: neither
            # its timings nor its speedup reach the profile. A clean one counts once, and its measured
            # speedup outranks the profile's prediction.
            if isinstance(item, ABResult) and not item.disturbed:
                self._learn(item.spec.stats)
                if self._profiles and self._pair:
                    self._profiles.record_ab(self._pair, item.speedup)
                    self._announce_prediction()

    @Slot()
    def shutdown(self) -> None:
        self._close_engine()

    def _close_engine(self) -> None:
        self._pair = None
        self._config = None
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.close()

    def _prepare_pair(self, engine: ChatEngineAPI) -> None:
        """Seed the engine's cost curve from the pair's profile, calibrating on its first load here."""
        if self._profiles is None or self._pair is None:
            return
        try:
            self._profiles.prepare(self._pair, engine)
        except TandemError as exc:  # a failed calibration costs the seed, never the load
            log.warning("could not calibrate the pair's verify cost: %s", exc)

    def _learn(self, stats: GenerationStats) -> None:
        """Fold a finished generation into the pair's profile (a small file write); never fails a reply."""
        if self._profiles is None or self._pair is None or self._engine is None or stats.n_generated < 2:
            return
        try:
            self._profiles.learn_from(self._pair, stats, self._engine.controller)
        except Exception:  # noqa: BLE001 - the profile is a nicety: log, and keep the reply
            log.exception("could not update the pair profile")
            return
        self._announce_prediction()

    def _announce_prediction(self) -> None:
        profile = self._profiles.get(self._pair) if self._profiles and self._pair else None
        self.predictionChanged.emit(profile.predict() if profile else None)

    @staticmethod
    def _log(exc: BaseException) -> None:
        if not isinstance(exc, TandemError):
            log.error("engine failure:\n%s", "".join(traceback.format_exception(exc)))


class RequestState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # cancelled while waiting; never reached the engine


class Request(QObject):
    """One generation as the chat that asked for it sees it. Signals arrive in the GUI thread, in order:
    queuePosition* -> started -> engineEvent* -> (failed) -> finished; a request cancelled while waiting goes
    straight to finished."""

    queuePosition = Signal(int)  # how many jobs run or wait before this one
    started = Signal()
    engineEvent = Signal(object)  # TokenEvent | NoticeEvent | DoneEvent ("event" would hide QObject.event)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, client: WorkerClient, job: GenerateJob) -> None:
        super().__init__()
        self._client = client
        self.job = job
        self.state = RequestState.WAITING
        self.done_event: DoneEvent | None = None
        self.result: ABResult | ABReport | None = None  # an A/B request's outcome (a server's: a report)
        self.error: str | None = None

    def cancel(self) -> None:
        self._client.cancel(self)


class WorkerClient(QObject):
    """GUI-thread facade over the worker thread: the shared job queue of every chat window."""

    loadStarted = Signal(object)  # LoadConfig
    loadProgress = Signal(float)
    modelLoaded = Signal(object)  # EngineInfo
    loadFailed = Signal(str)  # the model loaded before (client.info) still serves; see load_details
    modelUnloaded = Signal()
    busyChanged = Signal(bool)
    predictionChanged = Signal(object)  # Prediction | None for the loaded pair
    queueChanged = Signal()  # a request was queued, started, finished or cancelled (see queue_entries)

    _submitLoad = Signal(object)
    _submitGenerate = Signal(object)
    _submitAB = Signal(object)
    _submitUnload = Signal()
    _submitShutdown = Signal()

    def __init__(
        self,
        factory: EngineFactory | None = None,
        parent: QObject | None = None,
        profiles: ProfileStore | None = None,
    ) -> None:
        """`profiles`: where the learned acceptance of each model pair is kept; None keeps nothing."""
        super().__init__(parent)
        self.info: EngineInfo | None = None  # of the loaded model
        self.load_error: str | None = None  # why the last load failed, until one succeeds
        self.prediction: Prediction | None = None  # the loaded pair's speedup, once there is evidence
        self.loading: LoadJob | None = None
        self.load_details = ""  # llama.cpp's log behind the last failed load (the dialog's Details)
        self._queue: deque[LoadJob | GenerateJob | None] = deque()  # None: unload
        self._running: LoadJob | GenerateJob | None | bool = False  # False: idle
        self._requests: dict[int, Request] = {}
        self._ids = itertools.count(1)
        self._dispatch_pending = False
        self._thread = QThread()
        self._thread.setObjectName("inference")
        self._worker = InferenceWorker(factory or default_engine_factory, profiles)
        self._worker.moveToThread(self._thread)
        self._submitLoad.connect(self._worker.load)
        self._submitGenerate.connect(self._worker.generate)
        self._submitAB.connect(self._worker.ab)
        self._worker.predictionChanged.connect(self._on_prediction)
        self._submitUnload.connect(self._worker.unload)
        self._submitShutdown.connect(self._worker.shutdown)
        self._worker.loadProgress.connect(self.loadProgress)
        self._worker.loaded.connect(self._on_loaded)
        self._worker.loadFailed.connect(self._on_load_failed)
        self._worker.unloaded.connect(self._on_unloaded)
        self._worker.eventsReady.connect(self._take_events)
        self._worker.generationFailed.connect(self._on_failed)
        self._worker.generationFinished.connect(self._on_finished)
        self._worker.jobDone.connect(self._on_job_done)
        self._thread.start()

    # --- public API -------------------------------------------------------------------------------------
    def load(self, config: LoadConfig) -> LoadJob:
        """Queue loading a model (it replaces the current one once the jobs before it are done)."""
        job = LoadJob(config)
        self._enqueue(job)
        return job

    def unload(self) -> None:
        self._enqueue(None)

    def submit(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Request:
        return self._submit(GenerateJob(next(self._ids), tuple(messages), params))

    def submit_ab(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Request:
        """Queue an A/B run of `messages` (plain, then speculative, one seed); its result arrives as the
        request's `result` (an ABResult) and as its last engineEvent."""
        return self._submit(ABJob(next(self._ids), tuple(messages), params))

    def submit_job(self, job: GenerateJob) -> Request:
        """Queue a prepared job (the server's requests carry their origin, cancel token and raw prompt)."""
        return self._submit(job)

    def new_request_id(self) -> int:
        return next(self._ids)

    def _submit(self, job: GenerateJob) -> Request:
        request = Request(self, job)
        self._requests[job.request_id] = request
        self._enqueue(job)
        return request

    def queue_entries(self) -> list[tuple[str, str]]:
        """(origin, "running" | "waiting") of every request the worker runs or holds, in order."""
        out = []
        if isinstance(self._running, GenerateJob):
            out.append((self._running.origin, "running"))
        out.extend((job.origin, "waiting") for job in self._queue if isinstance(job, GenerateJob))
        return out

    def cancel(self, request: Request) -> None:
        if request.state is RequestState.WAITING and request.job in self._queue:
            self._queue.remove(request.job)
            request.state = RequestState.CANCELLED
            del self._requests[request.job.request_id]
            request.finished.emit()
            self._announce_positions()
        elif request.state is RequestState.RUNNING:
            request.job.cancel.cancel()

    def cancel_load(self) -> None:
        if self.loading is not None:
            self.loading.cancel.cancel()

    @property
    def busy(self) -> bool:
        return self._running is not False

    @property
    def pending(self) -> int:
        return len(self._queue) + (1 if self.busy else 0)

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Cancel everything and stop the worker thread (blocks until the current step ends)."""
        for job in self._queue:
            if isinstance(job, GenerateJob | LoadJob):
                job.cancel.cancel()
        self._queue.clear()
        if isinstance(self._running, GenerateJob | LoadJob):
            self._running.cancel.cancel()
        self._submitShutdown.emit()
        self._thread.quit()
        self._thread.wait(timeout_ms)

    # --- queue ------------------------------------------------------------------------------------------
    def _enqueue(self, job: LoadJob | GenerateJob | None) -> None:
        self._queue.append(job)
        # Dispatch from the event loop, not from inside submit(): the caller connects the request's signals
        # after submit() returns, and must not miss "started" or its queue position.
        if not self._dispatch_pending:
            self._dispatch_pending = True
            QTimer.singleShot(0, self, self._dispatch)

    @Slot()
    def _dispatch(self) -> None:
        self._dispatch_pending = False
        if self.busy or not self._queue:
            self._announce_positions()
            return
        job = self._queue.popleft()
        self._running = job
        self.busyChanged.emit(True)
        if job is None:
            self._submitUnload.emit()
        elif isinstance(job, LoadJob):
            self.loading = job
            self.loadStarted.emit(job.config)
            self._submitLoad.emit(job)
        else:
            request = self._requests[job.request_id]
            request.state = RequestState.RUNNING
            request.started.emit()
            (self._submitAB if isinstance(job, ABJob) else self._submitGenerate).emit(job)
        self._announce_positions()

    def _announce_positions(self) -> None:
        self.queueChanged.emit()
        ahead = 1 if self.busy else 0
        for job in self._queue:
            if isinstance(job, GenerateJob):
                self._requests[job.request_id].queuePosition.emit(ahead)
            ahead += 1

    @Slot()
    def _on_job_done(self) -> None:
        self._running = False
        self.busyChanged.emit(False)
        self._dispatch()

    # --- worker results ---------------------------------------------------------------------------------
    @Slot(object)
    def _on_loaded(self, info: EngineInfo) -> None:
        self.loading = None
        self.info = info
        self.load_error = None
        self.modelLoaded.emit(info)

    @Slot(str, str)
    def _on_load_failed(self, message: str, details: str) -> None:
        self.loading = None
        self.load_error = message
        self.load_details = details
        self.loadFailed.emit(message)

    @Slot()
    def _on_unloaded(self) -> None:
        self.info = None
        self._on_prediction(None)
        self.modelUnloaded.emit()

    @Slot(object)
    def _on_prediction(self, prediction: Prediction | None) -> None:
        self.prediction = prediction
        self.predictionChanged.emit(prediction)

    @Slot()
    def _take_events(self, limit: int | None = MAX_BATCH) -> None:
        """Hand the worker's events to their requests, a batch per turn (see app.event_outbox)."""
        batch, more = self._worker.outbox.take(limit)
        for request_id, event in batch:
            self._on_event(request_id, event)
        if more:
            QTimer.singleShot(0, self, self._take_events)

    def _on_event(self, request_id: int, event: object) -> None:
        request = self._requests.get(request_id)
        if request is not None:
            if isinstance(event, DoneEvent):
                request.done_event = event
            elif isinstance(event, ABResult | ABReport):
                request.result = event
            request.engineEvent.emit(event)

    @Slot(int, str)
    def _on_failed(self, request_id: int, message: str) -> None:
        self._take_events(None)  # the request's events first: the worker sent them before this
        request = self._requests.get(request_id)
        if request is not None:
            request.state = RequestState.FAILED
            request.error = message
            request.failed.emit(message)

    @Slot(int)
    def _on_finished(self, request_id: int) -> None:
        self._take_events(None)
        request = self._requests.pop(request_id, None)
        if request is not None:
            if request.state is RequestState.RUNNING:
                request.state = RequestState.DONE
            request.finished.emit()
