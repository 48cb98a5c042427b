"""Painting fit badges (engine.fit.badges.FitBadge): colours per verdict for the light and dark themes, a
badge label for the details panes, and the badge column of the manager's trees."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QLabel, QTreeWidgetItem, QWidget

from app.theme import Colors
from engine.fit.badges import FitBadge, Tone

# (background, text) per tone: green fits the GPU or runs fast, yellow about reading speed, orange slow, red
# too large (LM Studio's colours). Text on background passes WCAG AA in both themes.
LIGHT_BADGES: dict[Tone, tuple[str, str]] = {
    "good": ("#dafbe1", "#116329"),
    "fair": ("#fff1c2", "#7a4a00"),
    "poor": ("#ffe7d6", "#953800"),
    "bad": ("#ffebe9", "#a40e26"),
    "unknown": ("#eaeef2", "#424a53"),
}
DARK_BADGES: dict[Tone, tuple[str, str]] = {
    "good": ("#12361d", "#7ee787"),
    "fair": ("#3d2e00", "#f2cc60"),
    "poor": ("#3d1d00", "#ffa657"),
    "bad": ("#4c1419", "#ffa198"),
    "unknown": ("#2d333b", "#adbac7"),
}
ESTIMATING = "estimating…"
BADGE_ROLE = int(Qt.ItemDataRole.UserRole) + 7  # the badge level of a tree cell (tests, sorting)


def badge_colors(tone: Tone, colors: Colors) -> tuple[str, str]:
    return (DARK_BADGES if colors.dark else LIGHT_BADGES)[tone]


def set_item_badge(item: QTreeWidgetItem, column: int, badge: FitBadge | None, colors: Colors) -> None:
    """Show `badge` in one column of a tree row (None: not estimated yet)."""
    if badge is None:
        item.setText(column, ESTIMATING)
        item.setToolTip(column, "")
        item.setData(column, BADGE_ROLE, None)
        item.setBackground(column, QBrush())
        item.setForeground(column, QBrush())
        return
    bg, fg = badge_colors(badge.tone, colors)
    # The column shows the verdict and speed; what the plan gives up is the tooltip's first lines (and the
    # details pane's), so nothing is cut off mid-word.
    item.setText(column, badge.label + ("  ⚠" if badge.caveat else ""))
    item.setToolTip(column, badge.tooltip)
    item.setData(column, BADGE_ROLE, badge.level)
    item.setBackground(column, QBrush(QColor(bg)))
    item.setForeground(column, QBrush(QColor(fg)))


class BadgeLabel(QLabel):
    """A rounded, coloured fit badge with the memory breakdown as its tooltip."""

    def __init__(self, colors: Colors, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colors = colors
        self.badge: FitBadge | None = None
        self.setWordWrap(True)
        self.set_badge(None)

    def set_colors(self, colors: Colors) -> None:
        self._colors = colors
        self.set_badge(self.badge)

    def set_badge(self, badge: FitBadge | None) -> None:
        self.badge = badge
        if badge is None:
            self.setText(ESTIMATING)
            self.setToolTip("")
            self.setStyleSheet("padding: 4px 8px;")
            return
        bg, fg = badge_colors(badge.tone, self._colors)
        self.setText(badge.full_label)
        self.setToolTip(badge.tooltip)
        self.setStyleSheet(
            f"background: {bg}; color: {fg}; border-radius: 6px; padding: 4px 8px; font-weight: 600;"
        )
