"""The transcript of one chat: a scrolling column of message widgets bound to a ChatSession.

Each message is its own widget (app/message_widget.py), so a streaming reply re-renders only itself. The view
follows the bottom only while the user is there. Untrusted output: links never open by themselves (the user
sees the URL and confirms), resources are never loaded, and only http(s)/mailto links can be opened.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt, QUrl, Signal, SignalInstance, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextDocument
from PySide6.QtWidgets import QFrame, QLabel, QMessageBox, QScrollArea, QVBoxLayout, QWidget

from app import render
from app.chat_session import ChatSession
from app.message_widget import MessageWidget
from app.records import MessageItem
from app.theme import Colors

SAFE_SCHEMES = ("http", "https", "mailto")


class ChatView(QScrollArea):
    """Shows one ChatSession. Emits statusMessage for hover URLs and short confirmations."""

    statusMessage = Signal(str)
    modelsRequested = Signal()  # a failed reply offers to open the model manager

    def __init__(self, colors: Colors, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.colors = colors
        self.renderer = render.Renderer(colors)
        self.provenance = False
        self.session: ChatSession | None = None
        self.widgets: dict[int, MessageWidget] = {}  # id(MessageItem) -> widget
        # Injected for tests: ask before opening a link; open it.
        self.confirm_link: Callable[[QUrl], bool] = self._ask_open
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self._column = QWidget()
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(12, 12, 12, 12)
        self._layout.setSpacing(8)
        self._layout.addStretch(1)
        self.empty_hint = QLabel("Ask anything.\nEnter sends, Shift+Enter starts a new line.")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.insertWidget(0, self.empty_hint)
        self.setWidget(self._column)
        self._follow = True
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range)

    # --- binding --------------------------------------------------------------------------------------
    def bind(self, session: ChatSession | None) -> None:
        if self.session is not None:
            for signal, slot in self._connections():
                signal.disconnect(slot)
        self.session = session
        if session is not None:
            for signal, slot in self._connections():
                signal.connect(slot)
        self._rebuild()

    def _connections(self) -> list[tuple[SignalInstance, Callable[..., object]]]:
        s = self.session
        assert s is not None
        return [
            (s.messagesReset, self._rebuild),
            (s.messageAppended, self._on_appended),
            (s.replyChanged, self._on_reply_changed),
            (s.replyStats, self._on_reply_stats),
            (s.replyFinished, self._on_reply_finished),
            (s.stateChanged, self._on_state),
            (s.queuePosition, self._on_queue_position),
        ]

    def set_colors(self, colors: Colors) -> None:
        self.colors = colors
        self.renderer = render.Renderer(colors)
        self._update_hint()
        for widget in self.widgets.values():
            widget.apply_colors()
            widget.refresh()

    def _update_hint(self) -> None:
        self.empty_hint.setStyleSheet(f"color: {self.colors.muted}; font-size: 13pt")
        self.empty_hint.setVisible(self.session is not None and not self.widgets)

    def session_busy(self) -> bool:
        return self.session is not None and self.session.busy

    def is_last(self, item: MessageItem) -> bool:
        return self.session is not None and bool(self.session.messages) and self.session.messages[-1] is item

    # --- session signals ------------------------------------------------------------------------------
    @Slot()
    def _rebuild(self) -> None:
        for widget in self.widgets.values():
            self._layout.removeWidget(widget)
            widget.deleteLater()
        self.widgets.clear()
        for item in self.session.messages if self.session else []:
            self._add(item)
        self._update_hint()
        self.scroll_to_bottom()

    @Slot(object)
    def _on_appended(self, item: MessageItem) -> None:
        self._add(item)
        self._update_hint()
        self._on_state()
        self.scroll_to_bottom()  # the user just acted: show it

    def _add(self, item: MessageItem) -> MessageWidget:
        widget = MessageWidget(item, self)
        widget.copyRequested.connect(self._copy_message)
        widget.editRequested.connect(self._on_edit)
        widget.regenerateRequested.connect(self._regenerate)
        widget.cancelRequested.connect(self._cancel)
        widget.versionRequested.connect(self._show_version)
        widget.modelsRequested.connect(self.modelsRequested)
        widget.linkActivated.connect(self._on_link)
        self._layout.insertWidget(self._layout.count() - 1, widget)
        self.widgets[id(item)] = widget
        return widget

    @Slot(object)
    def _on_reply_changed(self, item: MessageItem) -> None:
        widget = self.widgets.get(id(item))
        if widget is not None:
            widget.stream_update()
            widget.refresh_chrome()

    @Slot(object)
    def _on_reply_stats(self, item: MessageItem) -> None:
        widget = self.widgets.get(id(item))
        if widget is not None and self.session is not None:
            n, tps, share = self.session.live_figures()
            widget.set_live_footer(render.live_footer_text(n, tps, share, item.drafter))

    @Slot(object)
    def _on_reply_finished(self, item: MessageItem) -> None:
        widget = self.widgets.get(id(item))
        if widget is not None:
            widget.finish_stream()
        self._on_state()

    @Slot()
    def _on_state(self, *_: object) -> None:
        for widget in self.widgets.values():
            widget.refresh_chrome()

    @Slot(int)
    def _on_queue_position(self, ahead: int) -> None:
        if self.session and self.session.messages:
            widget = self.widgets.get(id(self.session.messages[-1]))
            if widget is not None and widget.item.status == "waiting":
                widget.set_waiting(ahead)

    # --- user actions ---------------------------------------------------------------------------------
    def set_provenance(self, on: bool) -> None:
        self.provenance = on
        for widget in self.widgets.values():
            if widget.item.role == "assistant":
                widget.refresh()

    def _regenerate(self) -> None:
        if self.session is not None:
            self.session.regenerate()

    def _show_version(self, item: MessageItem, step: int) -> None:
        if self.session is not None:
            self.session.show_version(item, step)

    def _cancel(self) -> None:
        if self.session is not None:
            self.session.stop()

    def _copy_message(self, item: MessageItem) -> None:
        QGuiApplication.clipboard().setText(item.content)
        self.statusMessage.emit("Message copied")

    def _on_edit(self, item: MessageItem, text: str) -> None:
        if self.session is not None and item.id is not None:
            self.session.edit_and_rerun(item.id, text)

    def _on_link(self, url: QUrl, widget: MessageWidget) -> None:
        if url.scheme() == render.COPY_SCHEME:
            code = widget.code_block(int(url.path())) if url.path().isdigit() else None
            if code is not None:
                QGuiApplication.clipboard().setText(code)
                self.statusMessage.emit("Code copied")
            return
        if url.scheme().lower() not in SAFE_SCHEMES:
            QMessageBox.information(
                self, "Link not opened", f"Tandem only opens web and mail links.\n\n{url.toDisplayString()}"
            )
            return
        if self.confirm_link(url):
            self.open_url(url)

    def _ask_open(self, url: QUrl) -> bool:
        box = QMessageBox(QMessageBox.Icon.Question, "Open link?", "The model's reply links to:", parent=self)
        box.setInformativeText(url.toString(QUrl.ComponentFormattingOption.FullyEncoded))
        box.setStandardButtons(QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box.exec() == QMessageBox.StandardButton.Open

    # --- find -----------------------------------------------------------------------------------------
    def find_text(self, text: str, backward: bool = False) -> bool:
        """Select the next match of text in the transcript, wrapping around; False if there is none."""
        browsers = [b for w in self.widgets.values() for b in w.browsers() if not b.isHidden()]
        if not text or not browsers:
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        step = -1 if backward else 1
        start = next((i for i, b in enumerate(browsers) if b.textCursor().hasSelection()), None)
        if start is None:
            order = list(range(len(browsers)))[::step]
        else:  # go on from the current match, through the others, then wrap into the same browser
            order = [(start + k * step) % len(browsers) for k in range(len(browsers) + 1)]
        for k, i in enumerate(order):
            browser = browsers[i]
            if k > 0 or start is None:  # a fresh browser: search from its start (its end, backwards)
                cursor = browser.textCursor()
                cursor.movePosition(cursor.MoveOperation.End if backward else cursor.MoveOperation.Start)
                browser.setTextCursor(cursor)
            if browser.find(text, flags):
                for other in browsers:
                    if other is not browser and other.textCursor().hasSelection():
                        cursor = other.textCursor()
                        cursor.clearSelection()
                        other.setTextCursor(cursor)
                top = browser.mapTo(self._column, QPoint(0, browser.cursorRect().y())).y()
                self.ensureVisible(0, top, 0, 60)
                return True
        return False

    # --- scrolling ------------------------------------------------------------------------------------
    def scroll_to_bottom(self) -> None:
        self._follow = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 8

    @Slot(int, int)
    def _on_range(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
