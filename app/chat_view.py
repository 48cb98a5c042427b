"""The transcript of one chat: a scrolling column of message widgets bound to a ChatSession.

Each message body is its own auto-sized QTextBrowser, so a streaming reply re-renders only itself. The view
follows the bottom only while the user is there. Untrusted output: links never open by themselves (the user
sees the URL and confirms), resources are never loaded, and only http(s)/mailto links can be opened.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import render
from app.chat_session import ChatSession
from app.records import MessageItem
from app.theme import Colors

SAFE_SCHEMES = ("http", "https", "mailto")


class MessageBrowser(QTextBrowser):
    """Read-only rich text that grows to fit its document instead of scrolling."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self.document().documentLayout().documentSizeChanged.connect(self._fit)

    def loadResource(self, kind: int, url: QUrl) -> object:  # noqa: N802 - Qt override
        return None  # never fetch anything a model wrote (remote images, local files)

    def resizeEvent(self, event: object) -> None:  # noqa: N802
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._fit()

    def _fit(self) -> None:
        doc = self.document()
        doc.setTextWidth(self.viewport().width())
        height = math.ceil(doc.size().height()) + self.frameWidth() * 2
        if height != self.height():
            self.setFixedHeight(height)


class MessageWidget(QFrame):
    copyRequested = Signal(object)  # MessageItem
    editRequested = Signal(object, str)  # MessageItem, new text
    regenerateRequested = Signal()
    cancelRequested = Signal()
    linkActivated = Signal(QUrl, object)  # url, MessageWidget

    def __init__(self, item: MessageItem, view: ChatView) -> None:
        super().__init__()
        self.item = item
        self.view = view
        self.code_blocks: list[str] = []
        self._stream = render.StreamRenderer(view.renderer)
        self.render_ms = 0.0  # cost of the last body render, for the stall budget
        self.setObjectName("message")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)

        head = QHBoxLayout()
        self.role_label = QLabel("You" if item.role == "user" else "Assistant")
        self.role_label.setStyleSheet("font-weight: bold")
        self.status_label = QLabel()
        head.addWidget(self.role_label)
        head.addWidget(self.status_label)
        head.addStretch(1)
        tool = self._tool
        self.cancel_button = tool(head, "Cancel", "Cancel this waiting request", self.cancelRequested.emit)
        self.edit_button = tool(head, "Edit", "Edit this message and run again from here", self._edit)
        self.regen_button = tool(head, "Regenerate", "Write this reply again", self.regenerateRequested.emit)
        self.copy_button = tool(head, "Copy", "Copy the message text", lambda: self.copyRequested.emit(item))
        layout.addLayout(head)

        self.body = MessageBrowser()
        self.body.anchorClicked.connect(lambda url: self.linkActivated.emit(url, self))
        self.body.highlighted.connect(lambda url: view.statusMessage.emit(url.toDisplayString()))
        layout.addWidget(self.body)

        self.editor = QPlainTextEdit()
        self.editor.hide()
        self.edit_bar = QWidget()
        bar = QHBoxLayout(self.edit_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addStretch(1)
        save = QPushButton("Save && re-run")
        save.clicked.connect(lambda: self.editRequested.emit(item, self.editor.toPlainText()))
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.close_editor)
        bar.addWidget(cancel)
        bar.addWidget(save)
        self.edit_bar.hide()
        layout.addWidget(self.editor)
        layout.addWidget(self.edit_bar)

        self.footer = QLabel()
        self.footer.setWordWrap(True)
        self.footer.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.footer)
        self.apply_colors()
        self.refresh()

    def _tool(self, layout: QHBoxLayout, text: str, tip: str, slot: Callable[[], object]) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setToolTip(tip)
        button.setAutoRaise(True)
        button.clicked.connect(slot)
        layout.addWidget(button)
        return button

    def apply_colors(self) -> None:
        c = self.view.colors
        bg = c.user_bg if self.item.role == "user" else c.assistant_bg
        self.setStyleSheet(f"QFrame#message {{ background: {bg}; border-radius: 8px; }}")
        self.footer.setStyleSheet(f"color: {c.muted}")
        self.body.document().setDefaultStyleSheet(f"a {{ color: {c.link}; }}")

    # --- rendering ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Render the body, header and footer from the item (full render)."""
        self._render_body()
        self.refresh_chrome()

    def _render_body(self) -> None:
        item, colors = self.item, self.view.colors
        started = time.perf_counter()
        if item.role == "user":
            html, self.code_blocks = render.plain_html(item.content), []
        elif self.view.provenance and item.pieces:
            html, self.code_blocks = render.provenance_html(item.pieces, colors), []
        elif item.status == "waiting":
            html, self.code_blocks = "", []
        else:
            html, self.code_blocks = self._stream.render(item.content)
        if item.error:
            html += f'<p style="color:{colors.error}">{render.plain_html(item.error)}</p>'
        self.body.setHtml(html)
        self.body.setVisible(bool(html))
        self.render_ms = (time.perf_counter() - started) * 1000

    def stream_update(self) -> None:
        self._render_body()

    def refresh_chrome(self) -> None:
        item, busy = self.item, self.view.session_busy()
        is_last = self.view.is_last(item)
        status = {
            "waiting": "waiting for the model…",
            "streaming": "",
            "stopped": "(stopped)",
            "interrupted": "(interrupted)",
            "error": "(failed)",
        }.get(item.status, "")
        self.status_label.setText(status)
        self.cancel_button.setVisible(item.status == "waiting")
        self.edit_button.setVisible(item.role == "user" and item.id is not None)
        self.edit_button.setEnabled(not busy)
        self.regen_button.setVisible(item.role == "assistant" and is_last and item.status != "waiting")
        self.regen_button.setEnabled(not busy)
        self.copy_button.setVisible(bool(item.content))
        footer = ""
        if item.role == "assistant" and item.status not in ("waiting", "streaming"):
            footer = render.footer_text(item)
            if self.view.provenance and item.pieces:
                footer += ("<br>" if footer else "") + render.provenance_legend(self.view.colors)
        self.footer.setText(footer)
        self.footer.setVisible(bool(footer))

    def set_waiting(self, ahead: int) -> None:
        noun = "request" if ahead == 1 else "requests"
        self.status_label.setText(f"waiting for the model — {ahead} {noun} ahead")

    def set_live_footer(self, text: str) -> None:
        self.footer.setText(text)
        self.footer.setVisible(True)

    # --- editing --------------------------------------------------------------------------------------
    def _edit(self) -> None:
        self.editor.setPlainText(self.item.content)
        self.body.hide()
        self.editor.show()
        self.edit_bar.show()
        self.editor.setFocus()

    def close_editor(self) -> None:
        self.editor.hide()
        self.edit_bar.hide()
        self.body.show()


class ChatView(QScrollArea):
    """Shows one ChatSession. Emits statusMessage for hover URLs and short confirmations."""

    statusMessage = Signal(str)

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

    def _connections(self) -> list[tuple[object, object]]:
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
        self.scroll_to_bottom()

    @Slot(object)
    def _on_appended(self, item: MessageItem) -> None:
        self._add(item)
        self._on_state()
        self.scroll_to_bottom()  # the user just acted: show it

    def _add(self, item: MessageItem) -> MessageWidget:
        widget = MessageWidget(item, self)
        widget.copyRequested.connect(self._copy_message)
        widget.editRequested.connect(self._on_edit)
        widget.regenerateRequested.connect(lambda: self.session and self.session.regenerate())
        widget.cancelRequested.connect(lambda: self.session and self.session.stop())
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
            widget.refresh()
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

    def _copy_message(self, item: MessageItem) -> None:
        QGuiApplication.clipboard().setText(item.content)
        self.statusMessage.emit("Message copied")

    def _on_edit(self, item: MessageItem, text: str) -> None:
        if self.session is not None and item.id is not None:
            self.session.edit_and_rerun(item.id, text)

    def _on_link(self, url: QUrl, widget: MessageWidget) -> None:
        if url.scheme() == render.COPY_SCHEME:
            index = int(url.path()) if url.path().isdigit() else -1
            if 0 <= index < len(widget.code_blocks):
                QGuiApplication.clipboard().setText(widget.code_blocks[index])
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
    def find(self, text: str, backward: bool = False) -> bool:
        """Select the next match of text in the transcript, wrapping around; False if there is none."""
        widgets = list(self.widgets.values())
        if not text or not widgets:
            return False
        flags = QTextDocument.FindFlag.FindBackward if backward else QTextDocument.FindFlag(0)
        start = next((i for i, w in enumerate(widgets) if w.body.textCursor().hasSelection()), 0)
        order = widgets[start:] + widgets[:start] + widgets[start : start + 1]
        if backward:
            order = list(reversed(widgets[: start + 1])) + list(reversed(widgets[start:]))
        for i, widget in enumerate(order):
            if i > 0:  # a fresh message: search from its start (or end, backwards)
                cursor = widget.body.textCursor()
                cursor.movePosition(cursor.MoveOperation.End if backward else cursor.MoveOperation.Start)
                widget.body.setTextCursor(cursor)
            if widget.body.find(text, flags):
                for other in widgets:
                    if other is not widget:
                        cursor = other.body.textCursor()
                        cursor.clearSelection()
                        other.body.setTextCursor(cursor)
                rect = widget.body.cursorRect()
                self.ensureVisible(0, widget.y() + widget.body.y() + rect.y(), 0, 60)
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
