"""The main window: conversation list, the current chat, menus and shortcuts, and a status bar with the
loaded model pair, device and memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Slot
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
)

from app import theme
from app.chat_window import ChatPanel, add_chat_actions, open_chat_window
from app.context import AppContext
from app.conversations import ConversationSidebar
from app.labels import describe_model
from app.speed_panel import attach_speed_panel
from engine.config import LoadConfig
from engine.inference.api import EngineInfo
from engine.units import format_bytes


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
        self._build_menus()
        self._build_status_bar()
        self._restore_geometry()
        chats = context.store.list_chats()
        if chats:
            self.sidebar.select(chats[0].id)
        else:
            self.new_chat()

    # --- construction ---------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "New chat", QKeySequence.StandardKey.New, self.new_chat)
        self._action(file_menu, "New window", QKeySequence("Ctrl+Shift+N"), self.new_window)
        self._action(file_menu, "Open chat in new window", None, self.open_current_in_window)
        file_menu.addSeparator()
        self._action(file_menu, "Models…", QKeySequence("Ctrl+M"), self.open_models)
        self._action(file_menu, "Load model…", QKeySequence("Ctrl+L"), self.choose_model)
        self._action(file_menu, "Unload model", None, self.context.client.unload)
        file_menu.addSeparator()
        self._action(file_menu, "Export chat as Markdown…", None, lambda: self.export_chat("md"))
        export_json = QKeySequence("Ctrl+E")
        self._action(file_menu, "Export chat as JSON…", export_json, lambda: self.export_chat("json"))
        self._action(file_menu, "Import chat…", QKeySequence("Ctrl+I"), self.import_chat)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", QKeySequence.StandardKey.Quit, self.close)

        chat_menu = bar.addMenu("&Chat")
        for action in add_chat_actions(self, self.panel).values():
            chat_menu.addAction(action)
        chat_menu.addSeparator()
        self._action(chat_menu, "Search chats", QKeySequence("Ctrl+K"), self._focus_search)
        self._action(chat_menu, "Rename chat…", None, self.sidebar.rename_current)
        self._action(chat_menu, "Delete chat", None, self.sidebar.delete_current)
        chat_menu.addSeparator()
        self._action(chat_menu, "A/B: plain vs speculative", QKeySequence("Ctrl+B"), self.speed.run_ab)

        view_menu = bar.addMenu("&View")
        group = QActionGroup(self)
        for mode in theme.MODES:
            action = QAction(f"{mode.capitalize()} theme", self, checkable=True)
            action.setChecked(mode == theme.saved_mode())
            action.triggered.connect(lambda _=False, m=mode: self.set_theme(m))
            group.addAction(action)
            view_menu.addAction(action)
        view_menu.addSeparator()
        speed = self.speed.toggleViewAction()
        speed.setText("Speed panel")
        speed.setShortcut(QKeySequence("Ctrl+Shift+S"))
        view_menu.addAction(speed)

    def _action(self, menu: Any, text: str, keys: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        if keys is not None:
            action.setShortcut(keys)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.model_label = QLabel("No model loaded")
        self.memory_label = QLabel()
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 100)
        self.load_progress.setMaximumWidth(160)
        self.load_cancel = QPushButton("Cancel")
        self.load_cancel.clicked.connect(self.context.client.cancel_load)
        self.load_progress.hide()
        self.load_cancel.hide()
        status.addPermanentWidget(self.load_progress)
        status.addPermanentWidget(self.load_cancel)
        status.addPermanentWidget(self.model_label)
        status.addPermanentWidget(self.memory_label)
        client = self.context.client
        client.loadStarted.connect(self._on_load_started)
        client.loadProgress.connect(lambda f: self.load_progress.setValue(round(f * 100)))
        client.modelLoaded.connect(self._on_loaded)
        client.loadFailed.connect(self._on_load_failed)
        client.modelUnloaded.connect(lambda: self.model_label.setText("No model loaded"))
        self.context.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 4000))
        self._memory_timer = QTimer(self, interval=3000)
        self._memory_timer.timeout.connect(self._update_memory)
        self._memory_timer.start()
        self._update_memory()
        if client.info is not None:
            self._on_loaded(client.info)

    def _restore_geometry(self) -> None:
        settings = QSettings()
        geometry = settings.value("main_window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1180, 820)
        splitter = settings.value("main_window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        state = settings.value("main_window/state")  # docks: the speed panel's place and visibility
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)

    def set_theme(self, mode: str) -> None:
        theme.save_mode(mode)
        app = QApplication.instance()
        assert isinstance(app, QApplication)
        self.context.set_colors(theme.apply(app, mode))

    # --- chats ----------------------------------------------------------------------------------------
    @Slot(int)
    def show_chat(self, chat_id: int) -> None:
        if chat_id != self.panel.chat_id:
            self.panel.set_chat(chat_id if chat_id >= 0 else None)
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
        chat_id = self.panel.chat_id
        if chat_id is None:
            return
        name = self.panel.title.text() or "chat"
        safe = "".join(ch if ch.isalnum() or ch in " -_" else "_" for ch in name).strip() or "chat"
        path, _ = QFileDialog.getSaveFileName(self, "Export chat", f"{safe}.{kind}")
        if not path:
            return
        store = self.context.store
        if kind == "md":
            text = store.export_markdown(chat_id)
        else:
            text = json.dumps(store.export_json(chat_id), indent=2, ensure_ascii=False)
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            QMessageBox.warning(self, "Export failed", f"Could not write {path}: {exc.strerror}")

    def import_chat(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import chat", "", "Tandem chat (*.json)")
        if not path:
            return
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            chat_id = self.context.store.import_json(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            message = f"{Path(path).name} is not a chat Tandem can import: {exc}"
            QMessageBox.warning(self, "Import failed", message)
            return
        self.context.chatsChanged.emit()
        self.sidebar.select(chat_id)

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

    def choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "GGUF models (*.gguf)")
        if path:
            self.context.client.load(LoadConfig(model_path=Path(path)))

    def _on_load_started(self, config: LoadConfig) -> None:
        self.model_label.setText(f"Loading {config.model_path.name}…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self.load_cancel.show()

    def _on_loaded(self, info: EngineInfo) -> None:
        self.load_progress.hide()
        self.load_cancel.hide()
        self.model_label.setText(describe_model(info))
        self.model_label.setToolTip(str(info.model_path))
        self._update_memory()

    def _on_load_failed(self, message: str) -> None:
        self.load_progress.hide()
        self.load_cancel.hide()
        info = self.context.client.info  # a failed load changes nothing: the model before keeps serving
        self.model_label.setText(describe_model(info) if info is not None else "No model loaded")
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

    def _update_memory(self) -> None:
        try:
            import psutil

            rss = psutil.Process().memory_info().rss
        except (ImportError, OSError):
            return
        info = self.context.client.info
        model = ""
        if info is not None:
            model = f"model {format_bytes(info.model_bytes)}" + (
                f" + drafter {format_bytes(info.drafter_bytes)}" if info.drafter_bytes else ""
            )
            model += " · "
        self.memory_label.setText(f"{model}app memory {format_bytes(rss)}")

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
