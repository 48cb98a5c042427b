"""The main window: conversation list, the current chat, menus and shortcuts, and a status bar with the
loaded model pair, device and memory."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, Slot
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QMainWindow,
    QMessageBox,
    QSplitter,
)

from app.chat_window import ChatPanel, open_chat_window
from app.context import AppContext
from app.conversations import ConversationSidebar
from app.export_dialog import export_chat, import_chat
from app.geometry import resize_to_fit
from app.labels import describe_model
from app.server_controls import ServerControls
from app.speed_panel import attach_speed_panel
from app.status_bar import ModelStatus
from app.window_menus import add_action, build_menus, set_theme


class MainWindow(QMainWindow):
    def __init__(self, context: AppContext) -> None:
        super().__init__()
        self.context = context
        self.models: Any = None  # the model manager, created on first use
        self.load_error_box: QMessageBox | None = None  # the last "could not load" dialog
        self.setWindowTitle("Tandem")
        self.sidebar = ConversationSidebar(context)
        self.panel = ChatPanel(context)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.panel)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([240, 860])
        self.setCentralWidget(self.splitter)
        self.speed = attach_speed_panel(self, self.panel, context)
        self.sidebar.chatSelected.connect(self.show_chat)
        self.sidebar.openInWindow.connect(lambda chat_id: open_chat_window(context, chat_id))
        context.modelsRequested.connect(self.open_models)
        self._build_menus()
        self._build_status_bar()
        self.server_controls = ServerControls(self, context)  # the Server menu, after View
        self._restore_geometry()
        chats = context.store.list_chats()
        if chats:
            self.sidebar.select(chats[0].id)
        else:
            self.new_chat()

    # --- construction ---------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        menus = build_menus(self, self, self.context)
        file_menu, chat_menu = menus["file"], menus["chat"]
        open_here = add_action(self, file_menu, "Open chat in new window", None, self.open_current_in_window)
        file_menu.insertAction(file_menu.actions()[2], open_here)
        chat_menu.addSeparator()
        add_action(self, chat_menu, "Search chats", "Ctrl+K", self._focus_search)
        add_action(self, chat_menu, "Rename chat…", None, self.sidebar.rename_current)
        add_action(self, chat_menu, "Delete chat", None, self.sidebar.delete_current)
        self.context.quitRequested.connect(self.close)

    def _build_status_bar(self) -> None:
        self.model_status = ModelStatus(self, self.context)
        self.model_label = self.model_status.model_label
        self.memory_label = self.model_status.memory_label
        self.context.client.loadFailed.connect(self._on_load_failed)
        self.context.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 6000))

    def _restore_geometry(self) -> None:
        settings = QSettings()
        geometry = settings.value("main_window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            resize_to_fit(self, 1180, 820)
        splitter = settings.value("main_window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        state = settings.value("main_window/state")  # docks: the speed panel's place and visibility
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def set_theme(self, mode: str) -> None:
        set_theme(self.context, mode)

    # --- chats ----------------------------------------------------------------------------------------
    @Slot(int)
    def show_chat(self, chat_id: int) -> None:
        if chat_id >= 0 and chat_id != self.sidebar.current_chat():
            self.sidebar.select(chat_id, emit=False)
        if chat_id != self.panel.chat_id:
            self.panel.set_chat(chat_id if chat_id >= 0 else None)
        if not self.sidebar.list.hasFocus():  # a chat picked in the list keeps the focus there: Delete, F2
            self.panel.composer.setFocus()

    def new_chat(self) -> None:
        self.sidebar.new_chat()
        self.panel.composer.setFocus()

    def new_window(self) -> None:
        open_chat_window(self.context, self.context.new_chat())

    def open_current_in_window(self) -> None:
        if self.panel.chat_id is not None:
            open_chat_window(self.context, self.panel.chat_id)

    def _focus_search(self) -> None:
        self.sidebar.search.setFocus()
        self.sidebar.search.selectAll()

    def export_chat(self, kind: str) -> None:
        export_chat(self, self.context, self.panel.chat_id, kind)

    def import_chat(self) -> None:
        chat_id = import_chat(self, self.context)
        if chat_id is not None:
            self.show_chat(chat_id)

    # --- model ----------------------------------------------------------------------------------------
    def open_models(self) -> Any:
        """Show the model manager (one instance, non-modal; it keeps downloading while hidden)."""
        if self.models is None:
            from app.models.manager_window import ModelManager

            self.models = ModelManager(self.context, self)
        self.models.show()
        self.models.raise_()
        self.models.activateWindow()
        return self.models

    def _on_load_failed(self, message: str) -> None:
        if self.models is not None and self.models.isVisible():
            # The open model manager shows the reason next to its Load button: no second report on top.
            self.statusBar().showMessage(f"Could not load the model: {message}", 10_000)
            return
        self.show_load_error(message, self.context.client.load_details)

    def show_load_error(self, message: str, details: str) -> QMessageBox:
        """A short dialog: the engine's one-line message (bounded, escaped), what still works, and
        llama.cpp's log under "Details". Window-modal, so replies keep streaming behind it."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Could not load the model", message, parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # file names and log lines are never markup
        info = self.context.client.info
        if info is not None:
            box.setInformativeText(f"{describe_model(info)} is still loaded and answering.")
        if details:
            box.setDetailedText(details)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.load_error_box = box
        return box

    # --- closing --------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        busy = self.context.busy_sessions()
        if busy:
            answer = QMessageBox.question(
                self,
                "Quit Tandem?",
                "A reply is still being written. Quit anyway? What was written so far is kept.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        settings = QSettings()
        settings.setValue("main_window/geometry", self.saveGeometry())
        settings.setValue("main_window/splitter", self.splitter.saveState())
        settings.setValue("main_window/state", self.saveState())
        for window in list(self.context.windows):
            window.close()
        if self.models is not None:
            self.models.shutdown()
            self.models.close()
        super().closeEvent(event)
