"""The A/B run of one chat, separate from any widget: re-run the chat's last prompt plainly and speculatively,
alternating for several rounds, on the loaded pair with the chat's settings and one seed (engine.measure.ab,
in the worker thread), and keep the report with the chat.

Progress (tokens written so far by each side) is coalesced to a few updates a second; the report is stored
on the chat's last message, so it survives restarts and is exported with the chat.
"""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.history.store import HistoryStore
from app.records import ChatSettings, MessageItem
from app.worker import Request, WorkerClient
from engine.config import ChatMessage
from engine.errors import TandemError
from engine.events import TokenEvent
from engine.measure.ab import AB_ROUNDS, ABReport, ABResult, ABStep

PROGRESS_INTERVAL_MS = 200


class ABChat(Protocol):
    """What an A/B run reads of its chat (app.chat_session.ChatSession owns the runner)."""

    @property
    def client(self) -> WorkerClient: ...  # the chat's engine: the loaded model or a remote one

    store: HistoryStore
    settings: ChatSettings
    messages: list[MessageItem]

    def prompt(self) -> list[ChatMessage]: ...


class ABRunner(QObject):
    stateChanged = Signal(str)  # idle | waiting | running
    progress = Signal(str, int)  # side ("plain" / "speculative"), tokens written so far
    finished = Signal(object)  # ABReport, or None when cancelled or failed
    error = Signal(str)

    def __init__(self, session: ABChat, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.state = "idle"
        self._request: Request | None = None
        self._target_id: int | None = None  # the message the report is stored with
        self._side = "plain"
        self.round = 0  # of the run in progress, 0-based
        self.rounds = AB_ROUNDS
        self._tokens = 0
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(PROGRESS_INTERVAL_MS)
        self._progress_timer.timeout.connect(self._emit_progress)

    # --- what can run ---------------------------------------------------------------------------------
    def prompt(self) -> list[ChatMessage]:
        """The conversation up to and including its last user message (a reply after it is left out)."""
        messages = self.session.prompt()
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        return messages[: last_user + 1]

    def can_run(self) -> bool:
        info = self.session.client.info
        # A server that sets speculation for all requests cannot run one side plain (engine.remote.ab).
        per_request = info is not None and (info.endpoint is None or info.spec_per_request)
        return self.state == "idle" and per_request and bool(self.prompt())

    def last_report(self) -> ABReport | None:
        """The newest A/B report kept with this chat."""
        for item in reversed(self.session.messages):
            report = ABReport.from_dict(item.ab)
            if report is not None:
                return report
        return None

    # --- running --------------------------------------------------------------------------------------
    def start(self) -> bool:
        if not self.can_run():
            return False
        messages = self.prompt()
        stored = [m for m in self.session.messages if m.id is not None]
        self._target_id = stored[-1].id if stored else None
        request = self.session.client.submit_ab(messages, self.session.settings.to_params())
        self._request = request
        self._side, self.round, self._tokens = "plain", 0, 0
        request.started.connect(self._on_started)
        request.engineEvent.connect(self._on_event)
        request.failed.connect(self.error)
        request.finished.connect(self._on_finished)
        self._set_state("waiting")
        return True

    def cancel(self) -> None:
        if self._request is not None:
            self._request.cancel()

    @Slot()
    def _on_started(self) -> None:
        self._set_state("running")
        self._progress_timer.start()
        self._emit_progress()

    @Slot(object)
    def _on_event(self, item: object) -> None:
        if isinstance(item, ABStep):
            if (item.side, item.round) != (self._side, self.round):
                self._side, self.round, self._tokens = item.side, item.round, 0
            if isinstance(item.event, TokenEvent):
                self._tokens += 1

    @Slot()
    def _on_finished(self) -> None:
        request, self._request = self._request, None
        self._progress_timer.stop()
        result = request.result if request is not None else None
        report = result.report() if isinstance(result, ABResult) else result
        if report is not None:
            self._keep(report)
        self._set_state("idle")
        self.finished.emit(report)

    def _keep(self, report: ABReport) -> None:
        """Store the report with the message that was last when the run started (or, if that one is gone,
        the chat's last message now)."""
        data = report.to_dict()
        items = [m for m in self.session.messages if m.id is not None]
        item = next((m for m in items if m.id == self._target_id), items[-1] if items else None)
        if item is None or item.id is None:
            return
        try:
            self.session.store.set_ab_result(item.id, data)
        except TandemError as exc:  # the chat was deleted meanwhile: show the result, keep nothing
            self.error.emit(f"The A/B result could not be saved: {exc}")
            return
        item.ab = data

    def _emit_progress(self) -> None:
        self.progress.emit(self._side, self._tokens)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)
