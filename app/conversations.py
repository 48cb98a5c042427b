"""The conversation list: a list model over the history store and the sidebar that shows it (search,
new chat, rename, delete with undo, open in a new window)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chat_list_delegate import ChatListDelegate, PreviewRole
from app.context import AppContext

ChatIdRole = Qt.ItemDataRole.UserRole + 1
UNDO_SECONDS = 10


class ConversationModel(QAbstractListModel):
    def __init__(self, store: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.store = store
        self.search = ""
        self.rows: list[Any] = []  # ChatSummary, newest first

    def refresh(self) -> None:
        self.beginResetModel()
        self.rows = list(self.store.list_chats(self.search or None))
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:  # noqa: E501
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        chat = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return chat.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{chat.title}\n{chat.n_messages} messages\n{chat.preview or ''}".strip()
        if role == ChatIdRole:
            return chat.id
        if role == PreviewRole:
            return chat.preview
        return None

    def row_of(self, chat_id: int) -> int | None:
        return next((i for i, c in enumerate(self.rows) if c.id == chat_id), None)


class ConversationSidebar(QWidget):
    chatSelected = Signal(int)
    openInWindow = Signal(int)

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.model = ConversationModel(context.store, self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 4, 8)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setClearButtonEnabled(True)
        self._search_delay = QTimer(self, singleShot=True, interval=200)
        self._search_delay.timeout.connect(self._apply_search)
        self.search.textChanged.connect(lambda _: self._search_delay.start())
        new_button = QPushButton("New chat")
        new_button.clicked.connect(self.new_chat)
        layout.addWidget(new_button)
        layout.addWidget(self.search)

        self.no_match = QLabel()  # "No chats match “…”", in place of an empty list
        self.no_match.setWordWrap(True)
        self.no_match.setTextFormat(Qt.TextFormat.PlainText)
        self.no_match.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.no_match.hide()
        layout.addWidget(self.no_match)

        self.list = QListView()
        self.list.setModel(self.model)
        self.delegate = ChatListDelegate(self.list)
        self.list.setItemDelegate(self.delegate)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setUniformItemSizes(True)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.doubleClicked.connect(lambda index: self.openInWindow.emit(index.data(ChatIdRole)))
        self._quiet = False  # set while the list is rebuilt: re-selecting is not the user's choice
        self.list.selectionModel().currentChanged.connect(self._on_current)
        layout.addWidget(self.list, 1)
        self.list_actions: list[QAction] = []  # shown with their keys in the list's context menu
        for text, keys, slot in (
            ("Rename…", QKeySequence(Qt.Key.Key_F2), self.rename_current),
            ("Delete", QKeySequence.StandardKey.Delete, self.delete_current),
        ):
            action = QAction(text, self.list)
            action.setShortcut(keys)
            action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
            action.triggered.connect(slot)
            self.list.addAction(action)
            self.list_actions.append(action)

        self.undo_bar = QWidget()
        undo_layout = QHBoxLayout(self.undo_bar)
        undo_layout.setContentsMargins(0, 0, 0, 0)
        self.undo_label = QLabel()
        undo_button = QPushButton("Undo")
        undo_button.clicked.connect(self.undo_delete)
        undo_layout.addWidget(self.undo_label, 1)
        undo_layout.addWidget(undo_button)
        self.undo_bar.hide()
        layout.addWidget(self.undo_bar)
        self._deleted: int | None = None
        self._undo_timer = QTimer(self, singleShot=True, interval=UNDO_SECONDS * 1000)
        self._undo_timer.timeout.connect(self.undo_bar.hide)

        context.chatsChanged.connect(self.refresh)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        current = self.current_chat()
        self._quiet = True
        try:
            self.model.refresh()
            if current is not None:
                self.select(current, emit=False)
        finally:
            self._quiet = False

    def _on_current(self, index: QModelIndex, _previous: QModelIndex) -> None:
        if not self._quiet and index.isValid():
            self.chatSelected.emit(index.data(ChatIdRole))

    def current_chat(self) -> int | None:
        index = self.list.currentIndex()
        return index.data(ChatIdRole) if index.isValid() else None

    def select(self, chat_id: int, emit: bool = True) -> None:
        row = self.model.row_of(chat_id)
        if row is None:
            return
        quiet, self._quiet = self._quiet, True
        try:
            self.list.setCurrentIndex(self.model.index(row))
        finally:
            self._quiet = quiet
        if emit:
            self.chatSelected.emit(chat_id)

    def _apply_search(self) -> None:
        self.model.search = self.delegate.needle = self.search.text().strip()
        self.refresh()
        empty = bool(self.model.search) and not self.model.rows
        self.no_match.setText(f"No chats match “{self.model.search}”." if empty else "")
        self.no_match.setVisible(empty)

    @Slot()
    def new_chat(self) -> int:
        self.search.clear()
        self._apply_search()
        chat_id = self.context.new_chat()
        self.select(chat_id)
        return chat_id

    def rename_current(self) -> None:
        chat_id = self.current_chat()
        if chat_id is None:
            return
        old = self.list.currentIndex().data(Qt.ItemDataRole.DisplayRole)
        title, ok = QInputDialog.getText(self, "Rename chat", "Title:", text=old)
        if ok and title.strip():
            self.rename(chat_id, title.strip())

    def rename(self, chat_id: int, title: str) -> None:
        self.context.store.rename_chat(chat_id, title)
        session = self.context.sessions.get(chat_id)
        if session is not None:
            session.titleChanged.emit(title)
        self.context.chatsChanged.emit()

    def delete_current(self) -> None:
        chat_id = self.current_chat()
        if chat_id is not None:
            self.delete(chat_id)

    def delete(self, chat_id: int) -> None:
        """Soft delete, undoable for UNDO_SECONDS from the bar under the list."""
        title = next((c.title for c in self.model.rows if c.id == chat_id), "chat")
        self.context.delete_chat(chat_id)
        self._deleted = chat_id
        self.undo_label.setText(f"Deleted “{title}”")
        self.undo_bar.show()
        self._undo_timer.start()
        if self.model.rows:
            self.select(self.model.rows[0].id)
        else:
            self.chatSelected.emit(-1)

    @Slot()
    def undo_delete(self) -> None:
        if self._deleted is not None:
            chat_id, self._deleted = self._deleted, None
            self.context.restore_chat(chat_id)
            self.undo_bar.hide()
            self.select(chat_id)

    def _menu(self, pos: Any) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        chat_id = index.data(ChatIdRole)
        self.list.setCurrentIndex(index)
        menu = QMenu(self)
        menu.addAction("Open in new window", lambda: self.openInWindow.emit(chat_id))
        menu.addActions(self.list_actions)  # rename and delete the current chat: the one clicked
        menu.exec(self.list.viewport().mapToGlobal(pos))
