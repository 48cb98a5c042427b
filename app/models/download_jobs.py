"""The download queue behind the manager's Downloads tab.

Jobs (a pair: target + drafter files, or one file from a search) run one at a time on a download thread that
calls `engine.store.download.download` file by file. Progress comes back as the engine's frozen
DownloadProgress through queued signals. Pause is a cancel that keeps the partial file (the engine resumes it
with a Range request when the job starts again); cancel also deletes the partials. The queue itself and every
job record live in the GUI thread; the thread only sees an immutable work order and the job's CancelToken.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.worker import user_message
from engine.config import CancelToken
from engine.errors import DownloadCancelledError
from engine.fit.pair_plan import FileRef, missing
from engine.store.download import DownloadProgress, download
from engine.store.model_store import ModelStore


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "downloading"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(eq=False)
class DownloadJob:
    """One job as the GUI sees it (GUI thread only)."""

    id: int
    title: str
    files: tuple[FileRef, ...]
    state: JobState = JobState.QUEUED
    file_index: int = 0  # the file being (or next to be) downloaded
    progress: DownloadProgress | None = None
    error: str | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    stop: str | None = None  # "pause" or "cancel" while the thread winds down

    @property
    def current(self) -> FileRef:
        return self.files[min(self.file_index, len(self.files) - 1)]


@dataclass(frozen=True, slots=True)
class _WorkOrder:
    job_id: int
    files: tuple[FileRef, ...]
    store_root: Path
    cancel: CancelToken


class _DownloadWorker(QObject):
    progress = Signal(int, int, object)  # job id, file index, DownloadProgress
    fileDone = Signal(int, int, object)  # job id, file index, Path
    finished = Signal(int, str, str)  # job id, "done" | "stopped" | "failed", message

    @Slot(object)
    def run(self, order: _WorkOrder) -> None:
        store = ModelStore(order.store_root)
        try:
            for index, ref in enumerate(order.files):
                if order.cancel.cancelled:
                    raise DownloadCancelledError("stopped before the next file")
                if ref.pypi:
                    from engine.store.default_model import install_default_model

                    path = install_default_model(quiet=True)
                else:
                    assert ref.repo is not None

                    def report(p: DownloadProgress, index: int = index) -> None:
                        self.progress.emit(order.job_id, index, p)

                    path = download(  # at the commit the hub listing was read at, when resolved
                        ref.repo,
                        ref.filename,
                        revision=ref.revision or "main",
                        store=store,
                        progress=report,
                        cancel=order.cancel,
                    )
                self.fileDone.emit(order.job_id, index, path)
        except DownloadCancelledError:
            self.finished.emit(order.job_id, "stopped", "")
        except BaseException as exc:  # noqa: BLE001 - shown in the job's row, the thread survives
            self.finished.emit(order.job_id, "failed", user_message(exc))
        else:
            self.finished.emit(order.job_id, "done", "")


class DownloadQueue(QObject):
    jobAdded = Signal(object)  # DownloadJob
    jobChanged = Signal(object)  # DownloadJob: state or progress
    modelsChanged = Signal()  # a file was placed in the store (or partials deleted)

    _submit = Signal(object)

    def __init__(self, store: ModelStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.jobs: list[DownloadJob] = []
        self._ids = itertools.count(1)
        self._running: DownloadJob | None = None
        self._thread = QThread()
        self._thread.setObjectName("downloads")
        self._worker = _DownloadWorker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.fileDone.connect(self._on_file_done)
        self._worker.finished.connect(self._on_finished)
        self._thread.start()

    # --- public API -----------------------------------------------------------------------------------------
    def enqueue(self, title: str, files: tuple[FileRef, ...]) -> DownloadJob | None:
        """Queue the files not on this computer yet; None when there is nothing to download."""
        todo = missing(files, self.store)
        if not todo:
            return None
        existing = self.active_for(todo)
        if existing is not None:  # already queued, running or paused: that job goes on instead
            self.resume(existing)
            return existing
        job = DownloadJob(next(self._ids), title, todo)
        self.jobs.append(job)
        self.jobAdded.emit(job)
        self._dispatch()
        return job

    def active_for(self, files: tuple[FileRef, ...]) -> DownloadJob | None:
        wanted = {f.name for f in files}
        return next(
            (j for j in self.jobs if not j.state.finished and wanted & {f.name for f in j.files}), None
        )

    def pause(self, job: DownloadJob) -> None:
        if job.state is JobState.QUEUED:
            self._set(job, JobState.PAUSED)
        elif job.state is JobState.RUNNING:
            job.stop = "pause"
            job.cancel.cancel()

    def resume(self, job: DownloadJob) -> None:
        if job.state in (JobState.PAUSED, JobState.FAILED):
            job.cancel, job.stop, job.error = CancelToken(), None, None
            self._set(job, JobState.QUEUED)
            self._dispatch()

    def cancel(self, job: DownloadJob) -> None:
        if job.state is JobState.RUNNING:
            job.stop = "cancel"
            job.cancel.cancel()
        elif not job.state.finished:
            self._discard(job)
            self._set(job, JobState.CANCELLED)

    def clear_finished(self) -> None:
        self.jobs = [j for j in self.jobs if not j.state.finished]

    def shutdown(self) -> None:
        for job in self.jobs:
            job.cancel.cancel()  # the partials stay: the next download of the same file resumes them
        self._thread.quit()
        self._thread.wait(10_000)

    # --- internals ------------------------------------------------------------------------------------------
    def _set(self, job: DownloadJob, state: JobState) -> None:
        job.state = state
        self.jobChanged.emit(job)

    def _dispatch(self) -> None:
        if self._running is not None:
            return
        job = next((j for j in self.jobs if j.state is JobState.QUEUED), None)
        if job is None:
            return
        self._running = job
        job.progress = None
        self._set(job, JobState.RUNNING)
        self._submit.emit(_WorkOrder(job.id, job.files[job.file_index :], self.store.root, job.cancel))

    def _job(self, job_id: int) -> DownloadJob | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    def _discard(self, job: DownloadJob) -> None:
        for ref in job.files[job.file_index :]:
            if ref.repo is not None:
                self.store.discard_partials(ref.repo, ref.filename)

    @Slot(int, int, object)
    def _on_progress(self, job_id: int, index: int, progress: DownloadProgress) -> None:
        job = self._job(job_id)
        if job is not None and job.state is JobState.RUNNING:
            job.progress = progress
            self.jobChanged.emit(job)

    @Slot(int, int, object)
    def _on_file_done(self, job_id: int, index: int, path: Path) -> None:
        job = self._job(job_id)
        if job is not None:
            job.file_index += 1  # indexes in the work order start at the job's file_index
            job.progress = None
            self.jobChanged.emit(job)
        self.modelsChanged.emit()

    @Slot(int, str, str)
    def _on_finished(self, job_id: int, outcome: str, message: str) -> None:
        job = self._job(job_id)
        self._running = None
        if job is not None:
            if outcome == "done":
                self._set(job, JobState.DONE)
            elif outcome == "failed":
                job.error = message
                self._set(job, JobState.FAILED)
            elif job.stop == "cancel":
                self._discard(job)
                self._set(job, JobState.CANCELLED)
                self.modelsChanged.emit()
            else:
                self._set(job, JobState.PAUSED)
        self._dispatch()
