"""The menus every Tandem window has (the main window adds its chat-list items): File, Chat, View, Help.

A window hands in what the menus act on (`MenuHost`): its chat panel, its speed dock, and how it starts a new
chat or shows an imported one. What only the main window owns (the model manager, quitting) is asked for
through the shared context's signals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QActionGroup, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow, QMenu, QMessageBox, QWidget

from app import theme
from app.context import AppContext
from app.export_dialog import export_chat, import_chat
from app.performance_dialog import PerformanceDialog
from app.speed_panel import SpeedPanel
from engine import __version__
from engine.config import LoadConfig

Keys = QKeySequence | QKeySequence.StandardKey | str


class PanelActions(Protocol):
    """What the chat shortcuts act on (app.chat_window.ChatPanel)."""

    @property
    def chat_id(self) -> int | None: ...

    @property
    def composer(self) -> QWidget: ...

    def stop(self) -> None: ...

    def regenerate(self) -> None: ...

    def open_find(self) -> None: ...

    def open_settings(self) -> None: ...

    def toggle_provenance(self) -> None: ...


class MenuHost(Protocol):
    """What a window's menus act on."""

    @property
    def panel(self) -> PanelActions: ...

    @property
    def speed(self) -> SpeedPanel: ...

    def new_chat(self) -> None: ...

    def new_window(self) -> None: ...

    def show_chat(self, chat_id: int) -> None: ...


def add_chat_actions(window: QWidget, panel: PanelActions) -> dict[str, QAction]:
    """The chat shortcuts, the same in the main window and in chat windows."""
    specs: dict[str, tuple[str, Keys, Callable[[], object]]] = {
        "stop": ("Stop generating", "Ctrl+.", panel.stop),
        "regenerate": ("Regenerate last reply", "Ctrl+R", panel.regenerate),
        "find": ("Find in chat", QKeySequence.StandardKey.Find, panel.open_find),
        "settings": ("Chat settings…", "Ctrl+,", panel.open_settings),
        "provenance": ("Show token provenance", "Ctrl+P", panel.toggle_provenance),
    }
    actions = {}
    for name, (text, keys, slot) in specs.items():
        action = QAction(text, window)
        action.setShortcut(keys)
        action.triggered.connect(slot)
        window.addAction(action)
        actions[name] = action
    escape = QAction("Stop", window)
    escape.setShortcut(QKeySequence(Qt.Key.Key_Escape))
    escape.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    escape.triggered.connect(panel.stop)
    panel.composer.addAction(escape)
    return actions


def add_action(
    window: QMainWindow, menu: QMenu, text: str, keys: Keys | None, slot: Callable[[], object]
) -> QAction:
    action = QAction(text, window)
    if isinstance(keys, str):
        action.setShortcut(QKeySequence(keys))
    elif keys is not None:
        action.setShortcut(keys)
    action.triggered.connect(slot)
    menu.addAction(action)
    return action


def build_menus(window: QMainWindow, host: MenuHost, context: AppContext) -> dict[str, QMenu]:
    """File, Chat, View and Help on `window`'s menu bar; returns them by name for the window to extend."""
    bar = window.menuBar()
    panel = host.panel

    def current_chat_export(kind: str) -> Callable[[], object]:
        return lambda: export_chat(window, context, panel.chat_id, kind)

    def do_import() -> None:
        chat_id = import_chat(window, context)
        if chat_id is not None:
            host.show_chat(chat_id)

    file_menu = bar.addMenu("&File")
    add_action(window, file_menu, "New chat", QKeySequence.StandardKey.New, host.new_chat)
    add_action(window, file_menu, "New window", "Ctrl+Shift+N", host.new_window)
    file_menu.addSeparator()
    add_action(window, file_menu, "Models…", "Ctrl+M", context.modelsRequested.emit)
    add_action(window, file_menu, "Load model file…", "Ctrl+L", lambda: choose_model(window, context))
    add_action(window, file_menu, "Unload model", None, context.client.unload)
    add_action(window, file_menu, "Performance settings…", None, lambda: open_performance(window, context))
    file_menu.addSeparator()
    add_action(window, file_menu, "Export chat as Markdown…", None, current_chat_export("md"))
    add_action(window, file_menu, "Export chat as JSON…", "Ctrl+E", current_chat_export("json"))
    add_action(window, file_menu, "Import chat…", "Ctrl+I", do_import)
    file_menu.addSeparator()
    add_action(window, file_menu, "Close window", QKeySequence.StandardKey.Close, window.close)
    add_action(window, file_menu, "Quit", QKeySequence.StandardKey.Quit, context.quitRequested.emit)

    chat_menu = bar.addMenu("&Chat")
    for action in add_chat_actions(window, panel).values():
        chat_menu.addAction(action)
    chat_menu.addSeparator()
    add_action(window, chat_menu, "A/B: plain vs speculative", "Ctrl+B", host.speed.run_ab)

    view_menu = bar.addMenu("&View")
    group = QActionGroup(window)
    actions: dict[str, QAction] = {}
    for mode in theme.MODES:
        action = QAction(f"{mode.capitalize()} theme", window, checkable=True)
        action.setChecked(mode == theme.saved_mode())
        action.triggered.connect(lambda _=False, m=mode: set_theme(context, m))
        group.addAction(action)
        view_menu.addAction(action)
        actions[mode] = action
    context.colorsChanged.connect(lambda _c: actions[theme.saved_mode()].setChecked(True))
    view_menu.addSeparator()
    speed = host.speed.toggleViewAction()
    speed.setText("Speed panel")
    speed.setShortcut(QKeySequence("Ctrl+Shift+S"))
    view_menu.addAction(speed)

    help_menu = bar.addMenu("&Help")
    add_action(window, help_menu, "Open log", None, open_log)
    add_action(window, help_menu, "About Tandem", None, lambda: about(window))
    return {"file": file_menu, "chat": chat_menu, "view": view_menu, "help": help_menu}


def open_performance(window: QMainWindow, context: AppContext) -> None:
    PerformanceDialog(context, window).exec()


def set_theme(context: AppContext, mode: str) -> None:
    theme.save_mode(mode)
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    context.set_colors(theme.apply(app, mode))


def choose_model(window: QMainWindow, context: AppContext) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Load model file", "", "GGUF models (*.gguf)")
    if path:
        context.load(LoadConfig(model_path=Path(path)))


def open_log() -> None:
    from app.logs import log_path

    QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_path())))


def about(window: QMainWindow) -> None:
    QMessageBox.about(
        window,
        "About Tandem",
        f"<b>Tandem {__version__}</b><p>Local chat with lossless speculative decoding: a drafter proposes, "
        "your model checks, and the reply is exactly what the model alone would write — only faster.</p>",
    )
