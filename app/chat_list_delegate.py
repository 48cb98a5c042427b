"""How a row of the conversation list is drawn: the chat's title, and while searching, a line of the text
around the first match, with the match highlighted in both."""

from __future__ import annotations

import html

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QAbstractTextDocumentLayout, QPainter, QPalette, QTextDocument, QTextOption
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

PreviewRole = Qt.ItemDataRole.UserRole + 2  # the text around the first match, while searching
PADDING = 5


def highlight(text: str, needle: str, colors: tuple[str, str]) -> str:
    """`text` as escaped HTML with every case-insensitive match of `needle` marked in (background, text)."""
    if not needle:
        return html.escape(text)
    folded, key = text.casefold(), needle.casefold()
    if len(folded) != len(text):  # casefold changed lengths (ß -> ss): offsets would not map back
        return html.escape(text)
    out: list[str] = []
    start = 0
    while (found := folded.find(key, start)) >= 0:
        end = found + len(key)
        out.append(html.escape(text[start:found]))
        style = f"background-color:{colors[0]}; color:{colors[1]}"
        out.append(f'<span style="{style}">{html.escape(text[found:end])}</span>')
        start = end
    out.append(html.escape(text[start:]))
    return "".join(out)


def near_match(text: str, needle: str, before: int = 12) -> str:
    """`text` from a few characters before the first match, so a narrow list still shows the match."""
    found = text.casefold().find(needle.casefold()) if len(text.casefold()) == len(text) else -1
    if found <= before:
        return text
    return "…" + text[found - before :].lstrip()


class ChatListDelegate(QStyledItemDelegate):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.needle = ""  # what the list is filtered by (empty: not searching)

    def _document(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QTextDocument:
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_color = palette.color(role)
        muted = text_color if selected else palette.color(QPalette.ColorRole.PlaceholderText)
        mark = ("#f2cc60", "#1f2328")  # a highlighter's yellow, readable in both themes and when selected
        width = option.rect.width() - 2 * PADDING if option.rect.width() > 2 * PADDING else 10_000
        metrics = option.fontMetrics
        title = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        title = metrics.elidedText(title, Qt.TextElideMode.ElideRight, width)
        body = f'<div style="color:{text_color.name()}">{highlight(title, self.needle, mark)}</div>'
        preview = index.data(PreviewRole)
        if self.needle and preview:
            around = near_match(str(preview), self.needle)
            snippet = metrics.elidedText(around, Qt.TextElideMode.ElideRight, width)
            body += f'<div style="color:{muted.name()}">{highlight(snippet, self.needle, mark)}</div>'
        doc = QTextDocument()
        doc.setDefaultFont(option.font)
        doc.setDocumentMargin(0)
        no_wrap = QTextOption()
        no_wrap.setWrapMode(QTextOption.WrapMode.NoWrap)
        doc.setDefaultTextOption(no_wrap)
        doc.setHtml(body)
        return doc

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        self.initStyleOption(option, index)
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        option.text = ""
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, widget)
        rect = option.rect.adjusted(PADDING, PADDING, -PADDING, -PADDING)
        doc = self._document(option, index)
        doc.setTextWidth(rect.width())
        # One line per part: elide by clipping (the full title and preview are in the tooltip).
        painter.save()
        painter.translate(rect.topLeft())
        painter.setClipRect(QRectF(0, 0, rect.width(), rect.height()))
        context = QAbstractTextDocumentLayout.PaintContext()
        doc.documentLayout().draw(painter, context)
        painter.restore()

    def sizeHint(  # noqa: N802 - Qt override
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        lines = 2 if self.needle else 1
        height = option.fontMetrics.lineSpacing() * lines + 2 * PADDING
        return QSize(100, height + (2 if self.needle else 0))
