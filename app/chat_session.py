"""The logic of one chat, separate from any widget: its messages, settings, and the reply being generated.

A session turns the worker's per-token events into coalesced updates for the views: text at most every
~40 ms (`replyChanged`), live statistics at most once a second (`replyStats`), and a history checkpoint about
once a second, so a fast stream never floods the event loop and a killed app loses at most a second of text.
Several views (the main window and a separate window) may show the same session.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from app.ab_runner import ABRunner
from app.history.store import HistoryStore, suggest_title  # the history module owns the titling rule
from app.records import ChatSettings, MessageItem, apply_stats_dict, mark_model_switches, stats_to_dict
from app.remote_engines import RemoteEngines, engine_label
from app.worker import Request, RequestState, WorkerClient
from engine.config import ChatMessage
from engine.errors import TandemError
from engine.events import DoneEvent, NoticeEvent, StopReason, TokenEvent

PAINT_INTERVAL_MS = 40
STATS_INTERVAL_MS = 1000
CHECKPOINT_INTERVAL_MS = 1000


class ChatSession(QObject):
    messagesReset = Signal()  # the message list changed wholesale (opened, truncated, reply removed)
    messageAppended = Signal(object)  # MessageItem
    replyChanged = Signal(object)  # MessageItem whose content grew (coalesced)
    replyStats = Signal(object)  # MessageItem, live figures (at most once a second)
    replyFinished = Signal(object)  # MessageItem with final status and stats
    stateChanged = Signal(str)  # idle | waiting | generating
    queuePosition = Signal(int)
    notice = Signal(str)
    error = Signal(str)
    titleChanged = Signal(str)
    settingsChanged = Signal(object)  # ChatSettings

    def __init__(
        self,
        store: HistoryStore,
        client: WorkerClient,
        chat_id: int,
        parent: QObject | None = None,
        engines: RemoteEngines | None = None,
    ) -> None:
        """`client`: the loaded model's; `engines`: the remote engines a chat may be set to."""
        super().__init__(parent)
        self.store = store
        self.local_client = client
        self._engines = engines
        self.chat_id = chat_id
        self.messages: list[MessageItem] = []
        self.settings = ChatSettings.from_dict(store.chat_settings(chat_id))
        self.state = "idle"
        self._request: Request | None = None
        self._reply: MessageItem | None = None
        self._pending: list[str] = []
        self._live = _LiveCounter()
        self._paint = _timer(self, PAINT_INTERVAL_MS, self._flush_text, single=True)
        self._stats = _timer(self, STATS_INTERVAL_MS, self._emit_stats)
        self._checkpoint = _timer(self, CHECKPOINT_INTERVAL_MS, self._save_checkpoint)
        self.ab = ABRunner(self, parent=self)  # the chat's A/B run: its last prompt, plain then speculative
        self.ab.finished.connect(self._name_ab_model)
        self.reload()

    # --- reading --------------------------------------------------------------------------------------
    def reload(self) -> None:
        self.messages = []
        for stored in self.store.messages(self.chat_id):
            item = MessageItem(stored.id, stored.role, stored.content, stored.status, ab=stored.ab)
            apply_stats_dict(item, stored.stats)
            item.model = stored.model
            item.drafter = stored.drafter or item.drafter
            item.version, item.n_versions = stored.version, stored.n_versions
            self.messages.append(item)
        mark_model_switches(self.messages)
        self.messagesReset.emit()

    @property
    def busy(self) -> bool:
        return self.state != "idle"

    @property
    def client(self) -> WorkerClient:
        """Where this chat's requests go: the remote engine it is set to, else the loaded model."""
        if self.settings.engine and self._engines is not None:
            remote = self._engines.client(self.settings.engine)
            if remote is not None:
                return remote
        return self.local_client

    @property
    def remote(self) -> bool:
        return self.client is not self.local_client

    def last_assistant(self) -> MessageItem | None:
        return next((m for m in reversed(self.messages) if m.role == "assistant"), None)

    # --- actions --------------------------------------------------------------------------------------
    def send(self, text: str) -> bool:
        text = text.strip()
        if not text or self.busy:
            return False
        if not any(m.role == "user" for m in self.messages):
            self._retitle(text)
        message_id = self.store.add_message(self.chat_id, "user", text, settings=self.settings.to_dict())
        item = MessageItem(message_id, "user", text)
        self.messages.append(item)
        self.messageAppended.emit(item)
        self._start_reply()
        return True

    def stop(self) -> None:
        if self._request is not None:
            self._request.cancel()

    def regenerate(self) -> bool:
        """Write the last reply again. The new reply is another version of it: ‹ › switches back."""
        last = self.last_assistant()
        if self.busy or last is None or last.id is None or self.messages[-1] is not last:
            return False
        self.messages.pop()  # stays in the history; shown again if this request never starts
        self.messagesReset.emit()
        self._start_reply()
        return True

    def edit_and_rerun(self, message_id: int, text: str) -> bool:
        """Send an edited version of a message of the user's; the old one and what followed it are kept
        as the earlier version of that turn."""
        index = next((i for i, m in enumerate(self.messages) if m.id == message_id), None)
        text = text.strip()
        if self.busy or index is None or self.messages[index].role != "user" or not text:
            return False
        if text == self.messages[index].content:  # unchanged: a new version of the reply, not of the message
            return self._rerun_from(index)
        self.store.add_version(message_id, text)
        self.reload()
        self._start_reply()
        return True

    def _rerun_from(self, index: int) -> bool:
        """The same message again: a new version of the reply that followed it."""
        del self.messages[index + 1 :]
        self.messagesReset.emit()
        self._start_reply()
        return True

    def show_version(self, item: MessageItem, step: int) -> bool:
        """Show the previous (step -1) or next (+1) version of `item`'s turn, with the replies under it."""
        if self.busy or item.id is None or item not in self.messages:
            return False
        versions = self.store.versions(item.id)
        index = versions.index(item.id) + step
        if not 0 <= index < len(versions):
            return False
        self.store.show_version(versions[index])
        self.reload()
        return True

    def set_settings(self, settings: ChatSettings) -> None:
        self.settings = settings
        self.store.set_chat_settings(self.chat_id, settings.to_dict())
        self.settingsChanged.emit(settings)

    def prompt(self) -> list[ChatMessage]:
        """The conversation as the model sees it: system prompt, then every turn with text."""
        system = self.settings.system_prompt
        out = [ChatMessage("system", system)] if system.strip() else []
        for m in self.messages:
            if m.role in ("user", "assistant") and m.content and m.status != "waiting":
                out.append(ChatMessage(m.role, m.content))  # type: ignore[arg-type]
        return out

    # --- the reply ------------------------------------------------------------------------------------
    def _start_reply(self) -> None:
        if self.remote and self._engines is not None:
            self._engines.retry(self.settings.engine)  # a server that was down may be up now
        request = self.client.submit(self.prompt(), self.settings.to_params())
        self._request = request
        self._reply = MessageItem(None, "assistant", "", status="waiting")
        self._pending.clear()
        self._live = _LiveCounter()
        self.messages.append(self._reply)
        request.queuePosition.connect(self.queuePosition)
        request.started.connect(self._on_started)
        request.engineEvent.connect(self._on_event)
        request.failed.connect(self._on_failed)
        request.finished.connect(self._on_finished)
        self._set_state("waiting")
        self.messageAppended.emit(self._reply)

    @Slot()
    def _on_started(self) -> None:
        reply = self._reply
        assert reply is not None
        info = self.client.info
        reply.model = info.model_name if info is not None else None
        reply.drafter = info.drafter if info is not None and self.settings.speculative else None
        reply.engine = engine_label(info) if info is not None else None
        before = [m.id for m in self.messages if m is not reply and m.id is not None]
        reply.id = self.store.begin_reply(
            self.chat_id,
            settings=self.settings.to_dict(),
            after=before[-1] if before else None,
            model=reply.model,
            drafter=reply.drafter,
        )
        versions = self.store.versions(reply.id)
        reply.version = reply.n_versions = len(versions)
        mark_model_switches(self.messages)
        reply.status = "streaming"
        self._live.start = time.perf_counter()
        self._stats.start()
        self._checkpoint.start()
        self._set_state("generating")
        self.replyChanged.emit(reply)

    @Slot(object)
    def _on_event(self, event: object) -> None:
        reply = self._reply
        assert reply is not None
        if isinstance(event, TokenEvent):
            self._pending.append(event.text)
            reply.pieces.append((event.text, event.draft_depth))
            self._live.add(event)
            if not self._paint.isActive():
                self._paint.start()
        elif isinstance(event, NoticeEvent):
            reply.notices.append(event.message)
            self.notice.emit(event.message)
        elif isinstance(event, DoneEvent):
            reply.stats = event.stats
            reply.stop_reason = event.stop_reason.value
            if event.stats.spec is not None:
                reply.drafter = event.stats.spec.drafter

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        assert self._reply is not None
        client = self.client
        if self.remote and client.info is None and client.load_error:
            message = f"Could not reach the remote engine “{self.settings.engine}”: {client.load_error}"
        self._reply.error = message
        self.error.emit(message)

    @Slot()
    def _on_finished(self) -> None:
        request, reply = self._request, self._reply
        assert request is not None and reply is not None
        self._request = self._reply = None
        self._paint.stop()
        self._stats.stop()
        self._checkpoint.stop()
        if request.state is RequestState.CANCELLED:  # never reached the model: nothing to keep
            self._set_state("idle")
            self.reload()  # the chat as stored: a reply that was to be regenerated is still there
            return
        self._flush_text(emit=False)
        done = request.done_event
        if reply.error is not None:
            reply.status = "error"
        elif done is not None and done.stop_reason is StopReason.CANCELLED:
            reply.status = "stopped"
        else:
            reply.status = "complete"
        if done is not None:
            reply.content = done.text  # the engine's authoritative text (held-back stop strings resolved)
        if reply.id is not None:
            self.store.finish_reply(
                reply.id, reply.content, stats_to_dict(reply), status=reply.status, drafter=reply.drafter
            )
        self.replyFinished.emit(reply)
        self._set_state("idle")

    def _flush_text(self, emit: bool = True) -> None:
        if self._reply is None or not self._pending:
            return
        self._reply.content += "".join(self._pending)
        self._pending.clear()
        if emit:
            self.replyChanged.emit(self._reply)

    def _emit_stats(self) -> None:
        if self._reply is not None:
            self.replyStats.emit(self._reply)

    def _save_checkpoint(self) -> None:
        reply = self._reply
        if reply is not None and reply.id is not None:
            self.store.checkpoint_reply(reply.id, reply.content + "".join(self._pending))

    @Slot(object)
    def _name_ab_model(self, report: object) -> None:
        """Keep the model an A/B ran on with its report: the speed panel shows one model's figures."""
        info = self.client.info
        if report is None or info is None:
            return
        for item in reversed(self.messages):
            if item.ab is not None and item.id is not None and item.ab.get("created_at") == getattr(
                report, "created_at", None
            ):
                item.ab = {**item.ab, "model": info.model_name}
                with contextlib.suppress(TandemError):  # the chat was deleted meanwhile
                    self.store.set_ab_result(item.id, item.ab)
                return

    def live_figures(self) -> tuple[int, float, float]:
        """(tokens so far, tokens per second, share from accepted drafts) of the reply being generated."""
        return self._live.figures()

    def _retitle(self, text: str) -> None:
        title = suggest_title(text)
        self.store.rename_chat(self.chat_id, title)
        self.titleChanged.emit(title)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.stateChanged.emit(state)


class _LiveCounter:
    def __init__(self) -> None:
        self.start = 0.0
        self.n = 0
        self.n_draft = 0
        self.first_s: float | None = None
        self.last_s = 0.0

    def add(self, event: TokenEvent) -> None:
        self.n += 1
        self.n_draft += event.draft_depth > 0
        self.first_s = event.elapsed_s if self.first_s is None else self.first_s
        self.last_s = event.elapsed_s

    def figures(self) -> tuple[int, float, float]:
        span = self.last_s - (self.first_s or 0.0)
        tps = (self.n - 1) / span if self.n > 1 and span > 0 else 0.0
        return self.n, tps, (self.n_draft / self.n if self.n else 0.0)


def _timer(parent: QObject, interval_ms: int, slot: Any, single: bool = False) -> QTimer:
    timer = QTimer(parent)
    timer.setInterval(interval_ms)
    timer.setSingleShot(single)
    timer.timeout.connect(slot)
    return timer
