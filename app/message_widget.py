"""One message of a transcript: header with actions, rich-text body, inline editor, statistics footer.

Streaming without stalls: Qt's setHtml re-parses and re-lays out the whole document (about 2 ms per KB of
HTML here), so re-setting a long reply 25 times a second would freeze the event loop. While a reply streams,
its finished Markdown blocks go into "chunk" browsers that are re-set only when a block completes (and a new
chunk starts once one holds CHUNK_HTML_LIMIT of HTML); only the block still being written is re-rendered each
tick, in a small tail browser. When the reply is done, the chunks are replaced by one document (so selection
and find work across the whole reply).

A full render (a reopened chat, a finished reply) converts Markdown for at most REFRESH_BUDGET_S per event
loop turn: blocks not converted yet show as plain text and the render carries on in the next turn
(render.StreamRenderer keeps what is done). Whatever fails to render shows as escaped plain text.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import provenance, render
from app.elided import FitLabel
from app.records import MessageItem

log = logging.getLogger(__name__)

CHUNK_HTML_LIMIT = 4000  # characters of HTML per chunk browser while streaming (~8 ms to re-set)
RENDER_BUDGET = 0.25  # at most this share of the GUI thread goes to repainting a streaming reply
REFRESH_BUDGET_S = 0.03  # Markdown conversion, then setHtml, per event-loop turn in a full render
REFRESH_CHUNK_HTML = 16_000  # characters of HTML per browser in a full render


class MessageBrowser(QTextBrowser):
    """Read-only rich text that grows to fit its document instead of scrolling. Never loads a resource."""

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

    def loadResource(self, kind: int, url: QUrl | str) -> object:  # noqa: N802 - Qt override
        return None  # never fetch anything a model wrote (remote images, local files)

    def resizeEvent(self, event: Any) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        doc = self.document()
        width = self.viewport().width()
        if doc.textWidth() != width:  # setTextWidth re-lays out the whole document, even for the same width
            doc.setTextWidth(width)
        height = math.ceil(doc.size().height()) + self.frameWidth() * 2
        if height != self.height():
            self.setFixedHeight(height)


class MessageWidget(QFrame):
    copyRequested = Signal(object)  # MessageItem
    editRequested = Signal(object, str)  # MessageItem, new text
    regenerateRequested = Signal()
    cancelRequested = Signal()
    versionRequested = Signal(object, int)  # MessageItem, -1 (previous) or +1 (next version of the turn)
    modelsRequested = Signal()  # a failed reply's "Models…" button
    linkActivated = Signal(QUrl, object)  # url, MessageWidget

    def __init__(self, item: MessageItem, view: Any) -> None:
        super().__init__()
        self.item = item
        self.view = view  # the ChatView: colours, renderer, provenance flag, session state
        self.code_blocks: list[str] = []
        self.render_ms = 0.0  # cost of the last body update
        self._last_render = 0.0
        self._stream: _StreamState | None = None
        self._deferred = QTimer(self, singleShot=True)
        self._deferred.timeout.connect(self.stream_update)
        self._document: render.StreamRenderer | None = None  # the full render, kept across turns
        self._continue = QTimer(self, singleShot=True)  # carries on a full render that ran out of time
        self._continue.timeout.connect(self._refresh_step)
        self._shown: dict[int, str] = {}  # id(browser) -> the HTML it shows (a full render skips those)
        self.setObjectName("message")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(2)

        self.switch_label = QLabel()  # "Gemma 3 270M from here on (before: SmolLM2 135M)"
        self.switch_label.setWordWrap(True)
        self.switch_label.hide()
        layout.addWidget(self.switch_label)
        head = QHBoxLayout()
        self.role_label = QLabel("You" if item.role == "user" else "Assistant")
        self.role_label.setStyleSheet("font-weight: bold")
        self.model_label = FitLabel()  # who wrote the reply: model + drafter
        self.status_label = QLabel()
        # The row keeps its height when its buttons are hidden (waiting, streaming): no jump when they return.
        self.role_label.setMinimumHeight(QToolButton().sizeHint().height())
        head.addWidget(self.role_label)
        head.addWidget(self.status_label)
        head.addWidget(self.model_label, 1)
        self.versions = VersionSwitch(lambda step: self.versionRequested.emit(item, step))
        head.addWidget(self.versions)
        tool = self._tool
        self.cancel_button = tool(head, "Cancel", "Cancel this waiting request", self.cancelRequested.emit)
        self.edit_button = tool(
            head, "Edit", "Edit this message and run again from here (the original is kept: ‹ › switches "
            "back)", self._edit,
        )  # fmt: skip
        self.regen_button = tool(
            head, "Regenerate", "Write this reply again (this one is kept: ‹ › switches back)",
            self.regenerateRequested.emit,
        )  # fmt: skip
        self.models_button = tool(head, "Models…", "Choose and load a model", self.modelsRequested.emit)
        self.copy_button = tool(head, "Copy", "Copy the message text", lambda: self.copyRequested.emit(item))
        layout.addLayout(head)

        self.body_box = QVBoxLayout()
        self.body_box.setSpacing(8)  # chunks meet at block boundaries: keep a paragraph's gap between them
        self.body = self._browser()
        self.body_box.addWidget(self.body)
        layout.addLayout(self.body_box)

        self.editor = QPlainTextEdit()
        self.editor.hide()
        self.edit_bar = QWidget()
        bar = QHBoxLayout(self.edit_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addStretch(1)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.close_editor)
        save = QPushButton("Save && re-run")
        save.clicked.connect(lambda: self.editRequested.emit(item, self.editor.toPlainText()))
        bar.addWidget(cancel)
        bar.addWidget(save)
        self.edit_bar.hide()
        layout.addWidget(self.editor)
        layout.addWidget(self.edit_bar)

        self.footer = QLabel()
        self.footer.setWordWrap(True)
        self.footer.setTextFormat(Qt.TextFormat.RichText)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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

    def _browser(self) -> MessageBrowser:
        browser = MessageBrowser()
        browser.document().setDefaultStyleSheet(f"a {{ color: {self.view.colors.link}; }}")
        browser.anchorClicked.connect(lambda url: self.linkActivated.emit(url, self))
        browser.highlighted.connect(lambda url: self.view.statusMessage.emit(url.toDisplayString()))
        return browser

    def apply_colors(self) -> None:
        c = self.view.colors
        bg = c.user_bg if self.item.role == "user" else c.assistant_bg
        self.setStyleSheet(f"QFrame#message {{ background: {bg}; border-radius: 8px; }}")
        self.footer.setStyleSheet(f"color: {c.muted}")
        for browser in self.browsers():
            browser.document().setDefaultStyleSheet(f"a {{ color: {c.link}; }}")

    def browsers(self) -> list[MessageBrowser]:
        """Every browser showing part of the body, in order (several only while streaming)."""
        items = (self.body_box.itemAt(i) for i in range(self.body_box.count()))
        return [w for item in items if item is not None and isinstance(w := item.widget(), MessageBrowser)]

    # --- full rendering -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Render body, header and footer from the item (see the module docstring: a long reply is
        converted and shown over several event-loop turns, in browsers of REFRESH_CHUNK_HTML at most)."""
        self._end_stream()
        self._continue.stop()
        self._shown = {}
        self._refresh_step()

    def _refresh_step(self) -> None:
        item, colors = self.item, self.view.colors
        started = time.perf_counter()
        pending = shade = False
        try:
            if item.role == "user":
                parts, self.code_blocks = [render.plain_html(item.content)], []
            elif self.view.provenance and item.pieces:
                # One document, shaded over the rendered Markdown (provenance.shade aligns the tokens'
                # text with the document's); Markdown is bounded per block, so this render is too.
                html, self.code_blocks = self.view.renderer.document(item.content)
                parts, shade = [html], True
            else:
                doc = self._document
                if doc is None or doc.renderer is not self.view.renderer:  # new colours: a new renderer
                    doc = self._document = render.StreamRenderer(self.view.renderer)
                _html, self.code_blocks = doc.render(item.content, budget_s=REFRESH_BUDGET_S)
                parts, pending = list(doc.parts), doc.pending
        except Exception:  # noqa: BLE001 - a reply that cannot be rendered is shown as text, never hidden
            log.exception("could not render a message; showing it as plain text")
            parts, self.code_blocks = [render.plain_html(item.content)], []
        if item.error:
            parts.append(f'<p style="color:{colors.error}">{render.plain_html(item.error)}</p>')
        chunks = ["".join(parts)] if shade else _group(parts, REFRESH_CHUNK_HTML)
        browsers = self._chunk_browsers(len(chunks))
        progress = False  # each turn shows at least one more chunk: the render always ends
        for browser, html in zip(browsers, chunks, strict=True):
            if self._shown.get(id(browser)) == html:
                continue
            if progress and time.perf_counter() - started > REFRESH_BUDGET_S:
                pending = True  # the rest in the next turn
                break
            progress = True
            browser.setHtml(html)
            browser.setVisible(bool(html))
            self._shown[id(browser)] = html
        if shade and browsers:
            provenance.shade(browsers[0].document(), item.pieces, colors)
        if pending:
            self._continue.start(0)
        self.render_ms = (time.perf_counter() - started) * 1000
        self.refresh_chrome()

    def _chunk_browsers(self, n: int) -> list[MessageBrowser]:
        """The body and n - 1 more browsers after it (those beyond n are removed)."""
        browsers = self.browsers()
        while len(browsers) < max(1, n):
            browser = self._browser()
            self.body_box.addWidget(browser)
            browsers.append(browser)
        for extra in browsers[max(1, n) :]:
            self._drop_browser(extra)
        return browsers[: max(1, n)]

    # --- streaming ------------------------------------------------------------------------------------
    def stream_update(self, force: bool = False) -> None:
        """Show the reply's new text; re-renders only the unfinished block, within the render budget."""
        now = time.perf_counter()
        wait = self._last_render + self.render_ms / 1000 / RENDER_BUDGET - now
        if wait > 0 and not force:  # the last repaint was expensive: let the event loop breathe first
            if not self._deferred.isActive():
                self._deferred.start(math.ceil(wait * 1000))
            return
        self._deferred.stop()
        if self.view.provenance:  # shaded tokens need the whole reply in one document
            self.refresh()
            self._last_render = time.perf_counter()
            return
        state = self._stream
        if state is None:
            state = self._stream = _StreamState(self.body, self._browser())
            self.body.clear()
            self.body_box.addWidget(state.tail)
        blocks = render.stream_pieces(render.split_blocks(self.item.content))
        done, tail = blocks[:-1], blocks[-1:]
        if done[: len(state.done)] != state.done:  # never expected: the split is prefix-stable
            self.refresh()
            return
        renderer = self.view.renderer
        for block in done[len(state.done) :]:
            if block.kind == "code":
                state.chunk_html.append(renderer.code(block, len(self.code_blocks)))
                self.code_blocks.append(block.text)
            elif block.kind == "plain":
                state.chunk_html.append(render.plain_html(block.text))
            else:
                state.chunk_html.append(renderer.markdown(block.text))
            state.done.append(block)
            state.dirty = True
            if sum(map(len, state.chunk_html)) > CHUNK_HTML_LIMIT:
                self._seal_chunk(state)
        if state.dirty:
            state.chunk().setHtml("\n".join(state.chunk_html))
            state.dirty = False
        tail_html, tail_codes = "", []
        if tail:
            block = tail[0]
            if block.kind == "code":
                tail_html, tail_codes = renderer.code(block, len(self.code_blocks)), [block.text]
            elif block.kind == "plain":
                tail_html = render.plain_html(block.text)
            else:
                tail_html = renderer.markdown(block.text)
        state.tail_codes = tail_codes
        state.tail.setHtml(tail_html)
        for browser in self.browsers():
            browser.setVisible(bool(browser.toPlainText()))
        self._last_render = time.perf_counter()
        self.render_ms = (self._last_render - now) * 1000

    def finish_stream(self) -> None:
        """The reply is complete: render its last block and keep the chunks (one full re-render of a long
        reply would stall the event loop for tens of milliseconds; reopening the chat renders it whole)."""
        state = self._stream
        if state is None or self.item.error or self.view.provenance:
            self.refresh()
            return
        blocks = render.split_blocks(self.item.content)
        if any(render.STREAM_PIECE_CHARS < len(b.text) <= render.MAX_BLOCK_CHARS for b in blocks):
            self.refresh()  # a long block streamed as plain pieces can be rendered: render it once
            return
        self.stream_update(force=True)
        self.refresh_chrome()

    def _seal_chunk(self, state: _StreamState) -> None:
        state.chunk().setHtml("\n".join(state.chunk_html))
        state.sealed.append(state.chunk())
        state.chunk_html = []
        state.dirty = False
        browser = self._browser()
        self.body_box.insertWidget(self.body_box.indexOf(state.tail), browser)
        state.current = browser

    def _end_stream(self) -> None:
        self._deferred.stop()
        state, self._stream = self._stream, None
        if state is None:
            return
        for browser in self.browsers():
            if browser is not self.body:
                self._drop_browser(browser)

    def _drop_browser(self, browser: MessageBrowser) -> None:
        self.body_box.removeWidget(browser)
        self._shown.pop(id(browser), None)
        # Hidden now, deleted later: out of the layout but still a visible child until the event loop runs the
        # deferred delete, it would paint its old text over the re-rendered body.
        browser.hide()
        browser.deleteLater()

    def code_block(self, index: int) -> str | None:
        codes = self.code_blocks + (self._stream.tail_codes if self._stream else [])
        return codes[index] if 0 <= index < len(codes) else None

    # --- header and footer ----------------------------------------------------------------------------
    def refresh_chrome(self) -> None:
        item, busy = self.item, self.view.session_busy()
        status = {
            "waiting": "waiting for the model…",
            "stopped": "(stopped)",
            "interrupted": "(interrupted)",
            "error": "(failed)",
        }.get(item.status, "")
        if not (item.status == "waiting" and self.status_label.text().startswith("waiting")):
            self.status_label.setText(status)
        self.status_label.setStyleSheet(f"color: {self.view.colors.muted}")
        self.model_label.setStyleSheet(f"color: {self.view.colors.muted}")
        writer = render.model_words(item.model, item.drafter) if item.role == "assistant" else ""
        self.model_label.setText(writer)
        self.switch_label.setVisible(bool(item.switched_from))
        if item.switched_from:
            self.switch_label.setText(f"Model changed to {item.model} (before: {item.switched_from})")
            self.switch_label.setStyleSheet(f"color: {self.view.colors.muted}; font-style: italic")
        self.versions.show_version(item.version, item.n_versions, enabled=not busy)
        self.models_button.setVisible(item.status == "error" and self.view.is_last(item))
        self.cancel_button.setVisible(item.status == "waiting")
        self.edit_button.setVisible(item.role == "user" and item.id is not None)
        self.edit_button.setEnabled(not busy)
        done = item.status not in ("waiting", "streaming")
        self.regen_button.setVisible(item.role == "assistant" and self.view.is_last(item) and done)
        self.regen_button.setEnabled(not busy)
        self.copy_button.setVisible(bool(item.content) and done)
        footer = ""
        if item.role == "assistant" and done:
            footer = render.footer_text(item)
            if self.view.provenance and item.pieces:
                footer += ("<br>" if footer else "") + render.provenance_legend(self.view.colors)
        elif item.status == "streaming":
            footer = self.footer.text() or "generating…"  # live figures arrive once a second
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
        for browser in self.browsers():
            browser.hide()
        self.editor.show()
        self.edit_bar.show()
        self.editor.setFocus()

    def close_editor(self) -> None:
        self.editor.hide()
        self.edit_bar.hide()
        for browser in self.browsers():
            browser.setVisible(browser is self.body or bool(browser.toPlainText()))


def _group(parts: list[str], limit: int) -> list[str]:
    """Consecutive parts joined into chunks of at most `limit` characters (a longer part stays whole)."""
    chunks: list[str] = []
    size = limit + 1
    for part in parts:
        if size + len(part) > limit:
            chunks.append(part)
            size = len(part)
        else:
            chunks[-1] += "\n" + part
            size += len(part) + 1
    return chunks or [""]


class VersionSwitch(QWidget):
    """‹ 2/3 ›: which version of a turn is shown, and buttons to the others (hidden with one version)."""

    def __init__(self, step: Callable[[int], object]) -> None:
        super().__init__()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.previous = QToolButton()
        self.previous.setText("‹")
        self.previous.setToolTip("The previous version")
        self.previous.setAutoRaise(True)
        self.previous.clicked.connect(lambda: step(-1))
        self.label = QLabel()
        self.next = QToolButton()
        self.next.setText("›")
        self.next.setToolTip("The next version")
        self.next.setAutoRaise(True)
        self.next.clicked.connect(lambda: step(1))
        for widget in (self.previous, self.label, self.next):
            layout.addWidget(widget)
        self.hide()

    def show_version(self, index: int, count: int, enabled: bool) -> None:
        self.setVisible(count > 1)
        self.label.setText(f"{index}/{count}")
        self.previous.setEnabled(enabled and index > 1)
        self.next.setEnabled(enabled and index < count)


class _StreamState:
    """Which blocks of a streaming reply are already rendered, and into which browsers."""

    def __init__(self, first_chunk: MessageBrowser, tail: MessageBrowser) -> None:
        self.done: list[render.Block] = []
        self.chunk_html: list[str] = []  # HTML of the finished blocks in the current chunk
        self.sealed: list[MessageBrowser] = []
        self.current = first_chunk  # the browser finished blocks are going into
        self.tail = tail
        self.tail_codes: list[str] = []
        self.dirty = False

    def chunk(self) -> MessageBrowser:
        return self.current
