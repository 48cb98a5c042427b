"""The Server menu, its settings dialog and its place in the status bar: start and stop serving the loaded
model (app.server_bridge.AppServer), see its address, key and live request count, and what waits in the
engine's queue (chat windows and server requests alike)."""

from __future__ import annotations

from dataclasses import replace
from html import escape

from PySide6.QtCore import Slot
from PySide6.QtGui import QAction, QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.remote_dialog import manage_remote_engines
from app.server_bridge import ServerSettings, new_api_key

INTRO = (
    "Other programs on this computer (coding assistants, agents, scripts) can use the loaded model through "
    "an OpenAI-compatible API at this address; requests wait in the same queue as your chats. To let other "
    "machines connect, listen on 0.0.0.0 — that needs an API key."
)


class ServerSettingsDialog(QDialog):
    def __init__(self, settings: ServerSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Server settings")
        layout = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.host = QComboBox()
        self.host.setEditable(True)
        self.host.addItems(["127.0.0.1", "0.0.0.0"])
        self.host.setCurrentText(settings.host)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(settings.port or 8642)
        key_row = QHBoxLayout()
        self.key = QLineEdit(settings.api_key)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("none (loopback only)")
        show, generate = QPushButton("Show"), QPushButton("Generate")
        show.setCheckable(True)
        show.toggled.connect(
            lambda on: self.key.setEchoMode(QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password)
        )
        generate.clicked.connect(lambda: self.key.setText(new_api_key()))
        key_row.addWidget(self.key, 1)
        key_row.addWidget(show)
        key_row.addWidget(generate)
        self.origins = QLineEdit(" ".join(settings.cors_origins))
        self.origins.setPlaceholderText("none (web pages cannot call the server)")
        form.addRow("Address", self.host)
        form.addRow("Port", self.port)
        form.addRow("API key", key_row)
        form.addRow("Allowed web origins", self.origins)
        layout.addLayout(form)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)
        self.setMinimumWidth(560)

    def result_settings(self, base: ServerSettings) -> ServerSettings:
        return replace(
            base,
            host=self.host.currentText().strip() or "127.0.0.1",
            port=self.port.value(),
            api_key=self.key.text().strip(),
            cors_origins=tuple(self.origins.text().split()),
        )


class ServerControls:
    """The Server menu of a main window and its status bar label."""

    def __init__(self, window: QMainWindow, context: AppContext) -> None:
        self.window = window
        self.context = context
        self.server = context.server
        bar = window.menuBar()
        menu = QMenu("&Server", window)
        help_menu = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
        if help_menu is not None:
            bar.insertMenu(help_menu, menu)  # menus end with Help
        else:
            bar.addMenu(menu)
        self.toggle = QAction("Start server", window)
        self.toggle.triggered.connect(self.start_or_stop)
        menu.addAction(self.toggle)
        settings = QAction("Server settings…", window)
        settings.triggered.connect(self.edit_settings)
        menu.addAction(settings)
        self.copy = QAction("Copy server address", window)
        self.copy.triggered.connect(self.copy_address)
        menu.addAction(self.copy)
        menu.addSeparator()
        remotes = QAction("Remote engines…", window)
        remotes.triggered.connect(lambda: manage_remote_engines(context, window))
        menu.addAction(remotes)
        self.menu: QMenu = menu

        self.label = QLabel()
        self.queue_label = QLabel()
        window.statusBar().addPermanentWidget(self.queue_label)
        window.statusBar().addPermanentWidget(self.label)
        self.server.stateChanged.connect(self.update)
        self.server.activityChanged.connect(self.update)
        self.server.error.connect(self._on_error)
        context.client.queueChanged.connect(self.update)
        self.update()

    # --- actions ----------------------------------------------------------------------------------------
    def start_or_stop(self) -> None:
        if self.server.running:
            self.server.stop()
        else:
            self.server.start()

    def edit_settings(self) -> None:
        dialog = ServerSettingsDialog(self.server.settings, self.window)
        if not dialog.exec():
            return
        settings = dialog.result_settings(self.server.settings)
        if self.server.running:
            self.server.start(settings)  # restart on the new address
        else:
            self.server.settings = settings
            settings.save()

    def copy_address(self) -> None:
        if self.server.running:
            QGuiApplication.clipboard().setText(f"{self.server.url}/v1")
            self.context.statusMessage.emit(f"Copied {self.server.url}/v1")

    @Slot(str)
    def _on_error(self, message: str) -> None:
        if self.window.isActiveWindow() or self.window.isVisible():
            QMessageBox.warning(self.window, "The server did not start", message)

    # --- state ------------------------------------------------------------------------------------------
    @Slot()
    def update(self, *_: object) -> None:
        running = self.server.running
        self.toggle.setText("Stop server" if running else "Start server")
        self.copy.setEnabled(running)
        if running:
            key = "API key required" if self.server.settings.api_key else "no API key: this computer only"
            n = self.server.active
            self.label.setText(f"Server {self.server.url}/v1 · {n} request{'s' if n != 1 else ''}")
            self.label.setToolTip(f"OpenAI-compatible API at {self.server.url}/v1 · {key}")
        self.label.setVisible(running)
        entries = self.context.client.queue_entries()
        waiting = sum(1 for _, state in entries if state == "waiting")
        from_server = sum(1 for origin, _ in entries if origin.startswith("server"))
        self.queue_label.setVisible(bool(entries))
        if entries:
            parts = [f"{len(entries) - waiting} running"] + ([f"{waiting} waiting"] if waiting else [])
            if from_server:
                parts.append(f"{from_server} from the server")
            self.queue_label.setText("Queue: " + ", ".join(parts))
            rows = "".join(f"<li>{escape(origin)} — {state}</li>" for origin, state in entries)
            self.queue_label.setToolTip(f"<b>The engine's queue</b><ol>{rows}</ol>")
