"""What every window of one running app shares: the history store, the worker client (the one loaded model),
the colours, the open chat sessions and the separate chat windows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from app.chat_session import ChatSession
from app.records import ChatSettings
from app.remote_engines import RemoteEngines
from app.server_bridge import AppServer
from app.theme import Colors
from app.worker import WorkerClient

if TYPE_CHECKING:
    from app.chat_window import ChatWindow


class AppContext(QObject):
    chatsChanged = Signal()  # a chat was created, renamed, deleted, restored or got new messages
    statusMessage = Signal(str)
    colorsChanged = Signal(object)  # Colors: the theme changed (the system's, or the user's choice)

    def __init__(
        self, store: Any, client: WorkerClient, colors: Colors, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.client = client
        self.colors = colors
        self.default_settings = ChatSettings()
        self.sessions: dict[int, ChatSession] = {}
        self.windows: list[ChatWindow] = []
        self.remotes = RemoteEngines(self)
        self.server = AppServer(client, self)

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

    def open_window(self, chat_id: int) -> ChatWindow:
        """Show the chat in its own window (raising the one that already shows it)."""
        from app.chat_window import ChatWindow

        for window in self.windows:
            if window.chat_id == chat_id:
                window.raise_()
                window.activateWindow()
                return window
        window = ChatWindow(self, chat_id)
        self.windows.append(window)
        window.closed.connect(lambda: self.windows.remove(window) if window in self.windows else None)
        window.show()
        return window

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
