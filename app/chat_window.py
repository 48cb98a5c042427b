"""A chat panel (transcript, find bar, composer, per-chat toggles) and the window that shows one chat on its
own. The main window embeds a ChatPanel too and switches its chat."""

from __future__ import annotations

import math

from PySide6.QtCore import QByteArray, QSettings, Qt, Signal, Slot
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat_session import ChatSession
from app.chat_view import ChatView
from app.context import AppContext
from app.elided import ElidedLabel, FitLabel
from app.engine_picker import EnginePicker
from app.flow_layout import flow_row
from app.geometry import resize_to_fit
from app.settings_dialog import ChatSettingsDialog
from app.speed_panel import attach_speed_panel
from app.status_bar import ModelStatus
from app.window_menus import build_menus
from engine.inference.api import EngineInfo


class Composer(QPlainTextEdit):
    """Enter sends, Shift+Enter inserts a newline. Grows with its text from two lines to MAX_LINES, then
    scrolls."""

    submitted = Signal()
    MIN_LINES = 2
    MAX_LINES = 10

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("Message the model — Enter to send, Shift+Enter for a new line")
        self.setTabChangesFocus(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)
        self._fit()

    def lines_for(self, n: int) -> int:
        """The height that shows `n` lines of text."""
        margins = self.contentsMargins()
        doc_margin = 2 * self.document().documentMargin()
        return math.ceil(n * self.fontMetrics().lineSpacing() + doc_margin + margins.top() + margins.bottom())

    def _fit(self, *_: object) -> None:
        # The plain-text layout measures its document in lines (wrapped lines included).
        lines = int(self.document().documentLayout().documentSize().height())
        height = self.lines_for(min(max(lines, self.MIN_LINES), self.MAX_LINES))
        if height != self.height():
            self.setFixedHeight(height)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submitted.emit()
            return
        super().keyPressEvent(event)


def spec_label(info: EngineInfo | None) -> str:
    """The speculation toggle's text, naming the drafter actually loaded (its kind: the full name is in the
    tooltip): 'Speculative decoding (MTP)', '(n-gram)', '(draft model)', or '(no drafter)'."""
    if info is None:
        return "Speculative decoding"
    drafter = info.drafter
    if not drafter:
        return "Speculative decoding (no drafter)"
    if "MTP" in drafter:
        kind = "MTP"
    elif drafter.startswith("draft model"):
        kind = "draft model"
    else:
        kind = drafter
    return f"Speculative decoding ({kind})"


class FindBar(QWidget):
    def __init__(self, view: ChatView) -> None:
        super().__init__()
        self.view = view
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 2, 8, 2)
        self.field = QLineEdit()
        self.field.setPlaceholderText("Find in this chat")
        self.field.returnPressed.connect(lambda: self.search(backward=False))
        self.result = QLabel()
        prev_button, next_button, close = QToolButton(), QToolButton(), QToolButton()
        prev_button.setText("↑")
        next_button.setText("↓")
        close.setText("✕")
        prev_button.clicked.connect(lambda: self.search(backward=True))
        next_button.clicked.connect(lambda: self.search(backward=False))
        close.clicked.connect(self.hide)
        for widget in (self.field, prev_button, next_button, self.result, close):
            layout.addWidget(widget)
        self.hide()

    def open(self) -> None:
        self.show()
        self.field.setFocus()
        self.field.selectAll()

    def search(self, backward: bool) -> None:
        found = self.view.find_text(self.field.text(), backward=backward)
        self.result.setText("" if found or not self.field.text() else "not found")

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.hide()
            return
        super().keyPressEvent(event)


class ChatPanel(QWidget):
    """Everything to read and write one chat; `set_chat` switches which."""

    sessionChanged = Signal(object)  # ChatSession | None: the panel now shows another chat
    abRequested = Signal()  # the A/B button: the window's speed panel runs it

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.session: ChatSession | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)

        # The title has a row of its own with the chat's settings; the speculation controls wrap below it
        # when the window is narrow (a docked speed panel at 1024 px), instead of eliding the title.
        top = QHBoxLayout()
        top.setContentsMargins(12, 6, 12, 0)
        self.title = ElidedLabel()
        self.title.setStyleSheet("font-size: 14pt; font-weight: bold")
        self.engine_picker = EnginePicker(context)
        self.spec_toggle = QCheckBox(spec_label(context.client.info))
        self.spec_toggle.toggled.connect(self._on_spec_toggled)
        self.prediction_label = FitLabel()  # the pair's expected speedup, next to the toggle it is about
        self.ab_button = QToolButton()
        self.ab_button.setText("A/B")
        self.ab_button.setToolTip("Re-run your last prompt plain, then speculative, and compare them")
        self.ab_button.clicked.connect(self.abRequested)
        self.provenance_toggle = QCheckBox("Token provenance")
        self.provenance_toggle.setToolTip("Colour each token: accepted draft (by depth) or the target's own")
        self.provenance_toggle.toggled.connect(self._on_provenance_toggled)
        settings_button = QPushButton("Settings…")
        settings_button.clicked.connect(self.open_settings)
        top.addWidget(self.title, 1)
        top.addWidget(settings_button)
        layout.addLayout(top)
        controls = flow_row([self.spec_toggle, self.prediction_label, self.ab_button, self.provenance_toggle])
        controls.setContentsMargins(12, 2, 12, 6)
        layout.addWidget(controls)

        self.view = ChatView(context.colors)
        self.view.statusMessage.connect(context.statusMessage)
        self.view.modelsRequested.connect(context.modelsRequested)
        context.colorsChanged.connect(self.view.set_colors)
        self.find_bar = FindBar(self.view)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.find_bar)

        bottom = QHBoxLayout()
        bottom.setContentsMargins(12, 6, 12, 12)
        self.composer = Composer()
        self.composer.submitted.connect(self.send)
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(90)
        self.send_button.clicked.connect(self._send_or_stop)
        bottom.addWidget(self.composer, 1)
        side = QVBoxLayout()  # which engine answers, above the button that sends to it
        side.addWidget(self.engine_picker)
        side.addStretch(1)
        side.addWidget(self.send_button)
        bottom.addLayout(side)
        layout.addLayout(bottom)
        client = context.client
        for signal in (client.modelLoaded, client.modelUnloaded, client.loadFailed, client.predictionChanged):
            signal.connect(self._update_state)
        context.remotes.engineChanged.connect(self._update_state)
        self._update_state()

    def detach(self) -> None:
        """Stop listening to the shared objects (the panel is going away)."""
        client = self.context.client
        for signal in (client.modelLoaded, client.modelUnloaded, client.loadFailed, client.predictionChanged):
            signal.disconnect(self._update_state)
        self.context.remotes.engineChanged.disconnect(self._update_state)
        self.context.colorsChanged.disconnect(self.view.set_colors)
        self.engine_picker.detach()
        self.set_chat(None)

    @property
    def chat_id(self) -> int | None:
        return self.session.chat_id if self.session else None

    def set_chat(self, chat_id: int | None) -> None:
        if self.session is not None:
            self.session.stateChanged.disconnect(self._update_state)
            self.session.titleChanged.disconnect(self._set_title)
            self.session.settingsChanged.disconnect(self._on_settings)
            self.session.notice.disconnect(self.context.statusMessage)
            self.session.messageAppended.disconnect(self._update_state)
            self.session.ab.stateChanged.disconnect(self._update_state)
        self.session = self.context.session(chat_id) if chat_id is not None else None
        self.view.bind(self.session)
        self.engine_picker.bind(self.session)
        if self.session is not None:
            self.session.stateChanged.connect(self._update_state)
            self.session.titleChanged.connect(self._set_title)
            self.session.settingsChanged.connect(self._on_settings)
            self.session.notice.connect(self.context.statusMessage)
            self.session.messageAppended.connect(self._update_state)
            self.session.ab.stateChanged.connect(self._update_state)
            self._on_settings(self.session.settings)
        self._set_title(self._chat_title())
        self._update_state()
        self.sessionChanged.emit(self.session)

    def _chat_title(self) -> str:
        if self.session is None:
            return ""
        chats = {c.id: c.title for c in self.context.store.list_chats()}
        return chats.get(self.session.chat_id, "")

    @Slot(str)
    def _set_title(self, title: str) -> None:
        self.title.setText(title)
        self.window().setWindowTitle(f"{title} — Tandem" if title else "Tandem")

    def _on_settings(self, settings: object) -> None:
        self.spec_toggle.blockSignals(True)
        self.spec_toggle.setChecked(bool(getattr(settings, "speculative", True)))
        self.spec_toggle.blockSignals(False)
        self._update_state()  # the chat may have moved to another engine

    def _on_provenance_toggled(self, on: bool) -> None:
        self.view.set_provenance(on)

    def _on_spec_toggled(self, on: bool) -> None:
        if self.session is not None:
            from dataclasses import replace

            self.session.set_settings(replace(self.session.settings, speculative=on))

    # --- actions --------------------------------------------------------------------------------------
    @Slot()
    def send(self) -> None:
        if self.session is None or self.session.busy:
            return
        if self.session.send(self.composer.toPlainText()):
            self.composer.clear()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()

    def open_find(self) -> None:
        self.find_bar.open()

    def toggle_provenance(self) -> None:
        self.provenance_toggle.toggle()

    def regenerate(self) -> None:
        if self.session is not None:
            self.session.regenerate()

    def _send_or_stop(self) -> None:
        if self.session is not None and self.session.busy:
            self.stop()
        else:
            self.send()

    def open_settings(self) -> None:
        if self.session is None:
            return
        spec_text = spec_label(self.context.client.info)
        dialog = ChatSettingsDialog(self.session.settings, self, spec_text=spec_text)
        if dialog.exec():
            self.session.set_settings(dialog.result_settings())

    @Slot()
    def _update_state(self, *_: object) -> None:
        state = self.session.state if self.session else "idle"
        self.send_button.setText({"idle": "Send", "waiting": "Cancel", "generating": "Stop"}[state])
        self.send_button.setEnabled(self.session is not None)
        self.composer.setEnabled(self.session is not None)
        self.provenance_toggle.setEnabled(self.session is not None)
        client = self.session.client if self.session is not None else self.context.client
        info = client.info
        self.spec_toggle.setText(spec_label(info))
        self.spec_toggle.setEnabled(self.session is not None and (info is None or bool(info.drafter)))
        if info is not None and info.endpoint and not info.spec_per_request:
            self.spec_toggle.setEnabled(False)
            self.spec_toggle.setToolTip(
                f"{info.server} decides speculation for all its requests: a chat cannot switch it off"
            )
        elif info is not None and not info.drafter:
            why = f": {info.drafter_note}" if info.drafter_note else ""
            self.spec_toggle.setToolTip(f"The loaded model has no drafter{why}")
        else:
            drafter = f" ({info.drafter})" if info is not None else ""
            self.spec_toggle.setToolTip(
                f"Use the drafter{drafter} for this chat. The reply is the same either way."
            )
        self._update_prediction(info)
        self.ab_button.setEnabled(self.session is not None and self.session.ab.can_run())

    def _update_prediction(self, info: EngineInfo | None) -> None:
        prediction = self.context.client.prediction
        local = info is not None and info.endpoint is None  # a server's speed is not learned here
        self.prediction_label.setVisible(local and info is not None and bool(info.drafter))
        self.prediction_label.setStyleSheet(f"color: {self.context.colors.muted}; padding-left: 4px")
        if prediction is None:
            self.prediction_label.setText("no estimate yet")
            self.prediction_label.setToolTip(
                "The expected speedup appears once this pair has written a reply or an A/B on this machine"
            )
        else:
            self.prediction_label.setText(prediction.short())
            self.prediction_label.setToolTip(prediction.detail())


class ChatWindow(QMainWindow):
    """One chat in a window of its own; several can stand side by side and share the loaded model. It has
    the main window's menus and status bar, without the conversation list."""

    closed = Signal()

    def __init__(self, context: AppContext, chat_id: int) -> None:
        super().__init__()
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.context = context
        self.panel = ChatPanel(context)
        self.setCentralWidget(self.panel)
        self.panel.set_chat(chat_id)
        self.speed = attach_speed_panel(self, self.panel, context)
        context.statusMessage.connect(self._show_status)
        build_menus(self, self, context)
        self.model_status = ModelStatus(self, context)
        geometry = QSettings().value("chat_window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            resize_to_fit(self, 760, 820)

    @property
    def chat_id(self) -> int | None:
        return self.panel.chat_id

    def new_chat(self) -> None:
        self.show_chat(self.context.new_chat())

    def new_window(self) -> None:
        open_chat_window(self.context, self.context.new_chat())

    def show_chat(self, chat_id: int) -> None:
        self.panel.set_chat(chat_id)
        self.panel.composer.setFocus()

    @Slot(str)
    def _show_status(self, text: str) -> None:
        if self.isActiveWindow():
            self.statusBar().showMessage(text, 4000)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt override
        QSettings().setValue("chat_window/geometry", self.saveGeometry())
        self.context.statusMessage.disconnect(self._show_status)
        self.model_status.detach()
        self.speed.detach()
        self.panel.detach()
        self.closed.emit()
        super().closeEvent(event)


def open_chat_window(context: AppContext, chat_id: int) -> ChatWindow:
    """Show the chat in its own window (raising the one that already shows it)."""
    for handle in context.windows:
        if isinstance(handle, ChatWindow) and handle.chat_id == chat_id:
            handle.raise_()
            handle.activateWindow()
            return handle
    window = ChatWindow(context, chat_id)
    context.windows.append(window)
    window.closed.connect(lambda: context.windows.remove(window) if window in context.windows else None)
    window.show()
    return window
