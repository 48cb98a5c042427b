"""What every window of one running app shares: the history store, the worker client (the one loaded model),
the colours, the open chat sessions and the separate chat windows."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from PySide6.QtCore import QObject, Signal

from app.chat_session import ChatSession
from app.history.store import HistoryStore
from app.labels import describe_model
from app.model_settings import load_performance, remember_model
from app.records import ChatSettings
from app.remote_engines import RemoteEngines
from app.server_bridge import AppServer
from app.theme import Colors
from app.worker import WorkerClient
from engine.config import DEFAULT_N_BATCH, LoadConfig
from engine.inference.api import EngineInfo

log = logging.getLogger(__name__)


class ChatWindowHandle(Protocol):
    """What the context needs of a separate chat window (app.chat_window.open_chat_window makes them)."""

    @property
    def chat_id(self) -> int | None: ...

    def close(self) -> bool: ...


class AppContext(QObject):
    chatsChanged = Signal()  # a chat was created, renamed, deleted, restored or got new messages
    statusMessage = Signal(str)
    colorsChanged = Signal(object)  # Colors: the theme changed (the system's, or the user's choice)
    modelsRequested = Signal()  # any window asks for the model manager (the main window owns it)
    quitRequested = Signal()  # File ▸ Quit in any window: the main window closes, and the app with it

    def __init__(
        self, store: HistoryStore, client: WorkerClient, colors: Colors, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.client = client
        self.colors = colors
        self.default_settings = ChatSettings()
        self.sessions: dict[int, ChatSession] = {}
        self.windows: list[ChatWindowHandle] = []  # the separate chat windows, in opening order
        self.remotes = RemoteEngines(self)
        self.server = AppServer(client, self)
        self.loaded_config: LoadConfig | None = None  # how the model now loaded was asked for
        self._loading: LoadConfig | None = None
        client.loadStarted.connect(self._on_load_started)
        client.modelLoaded.connect(self._on_loaded)

    def load(self, config: LoadConfig) -> None:
        """Load a model with the app's performance settings; once loaded, the app reopens with it."""
        self.client.load(load_performance().apply(config))

    def reload(self) -> bool:
        """Load the current model again (with changed performance settings)."""
        if self.loaded_config is None:
            return False
        self.load(replace(self.loaded_config, n_threads=None, n_batch=DEFAULT_N_BATCH))
        return True

    def _on_load_started(self, config: LoadConfig) -> None:
        self._loading = config

    def _on_loaded(self, info: EngineInfo) -> None:
        log.info("loaded %s (%s)", describe_model(info), info.model_path)
        if self._loading is not None:
            self.loaded_config = self._loading
            remember_model(self._loading)

    def set_colors(self, colors: Colors) -> None:
        if colors != self.colors:
            self.colors = colors
            self.colorsChanged.emit(colors)

    def session(self, chat_id: int) -> ChatSession:
        """The one session of a chat, shared by every view that shows it."""
        session = self.sessions.get(chat_id)
        if session is None:
            session = ChatSession(self.store, self.client, chat_id, parent=self, engines=self.remotes)
            session.titleChanged.connect(self.chatsChanged)
            session.replyFinished.connect(self.chatsChanged)
            session.messageAppended.connect(self.chatsChanged)
            self.sessions[chat_id] = session
        return session

    def new_chat(self) -> int:
        chat_id = int(self.store.create_chat(settings=self.default_settings.to_dict()))
        self.chatsChanged.emit()
        return chat_id

    def delete_chat(self, chat_id: int) -> None:
        session = self.sessions.pop(chat_id, None)
        if session is not None:
            session.stop()
        for window in list(self.windows):
            if window.chat_id == chat_id:
                window.close()
        self.store.delete_chat(chat_id)
        self.chatsChanged.emit()

    def restore_chat(self, chat_id: int) -> None:
        self.store.restore_chat(chat_id)
        self.chatsChanged.emit()

    def busy_sessions(self) -> list[ChatSession]:
        return [s for s in self.sessions.values() if s.busy]

    def shutdown(self) -> None:
        for window in list(self.windows):
            window.close()
        for session in self.sessions.values():
            session.stop()
        self.server.shutdown()
        self.remotes.shutdown()
        self.client.shutdown()
