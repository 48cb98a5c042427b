"""Light and dark themes. The palette follows the system colour scheme (Qt >= 6.5 reports it) unless the user
forces one; `Colors` is plain data so the HTML renderer can use it without touching Qt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPainter, QPalette
from PySide6.QtWidgets import QApplication, QProxyStyle, QStyle, QStyleFactory, QStyleOption, QWidget

from engine.cli.app import THEMES


@dataclass(frozen=True, slots=True)
class Colors:
    dark: bool
    text: str
    muted: str  # footers, secondary labels
    link: str
    code_bg: str
    code_border: str
    inline_code_bg: str
    user_bg: str  # background of the user's messages
    assistant_bg: str
    error: str
    pygments_style: str
    # Provenance view: the target's own tokens, then accepted draft tokens by draft depth (1, 2, 3+).
    prov_target: str
    prov_depth: tuple[str, ...]


LIGHT = Colors(
    dark=False,
    text="#1f2328",
    muted="#656d76",
    link="#0969da",
    code_bg="#f6f8fa",
    code_border="#d0d7de",
    inline_code_bg="#eff1f3",
    user_bg="#e8f0fe",
    assistant_bg="#ffffff",
    error="#cf222e",
    pygments_style="friendly",
    prov_target="transparent",
    prov_depth=("#d3f5d3", "#a8e6a8", "#7dd37d", "#55bf55"),
)

DARK = Colors(
    dark=True,
    text="#e6edf3",
    muted="#8d96a0",
    link="#4493f8",
    code_bg="#161b22",
    code_border="#30363d",
    inline_code_bg="#2d333b",
    user_bg="#1c2b41",
    assistant_bg="#0d1117",
    error="#ff7b72",
    pygments_style="github-dark",
    prov_target="transparent",
    prov_depth=("#1d4428", "#26603a", "#2f7d4a", "#3a9a5c"),
)


def system_prefers_dark() -> bool:
    hints = QGuiApplication.styleHints()
    return hints.colorScheme() == Qt.ColorScheme.Dark


def resolve(mode: str) -> Colors:
    """mode: "system", "light" or "dark"."""
    if mode == "dark" or (mode == "system" and system_prefers_dark()):
        return DARK
    return LIGHT


def _dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor("#0d1117"), QColor("#161b22"), QColor(DARK.text)
    for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
        p.setColor(group, QPalette.ColorRole.Window, window)
        p.setColor(group, QPalette.ColorRole.WindowText, text)
        p.setColor(group, QPalette.ColorRole.Base, base)
        p.setColor(group, QPalette.ColorRole.AlternateBase, window)
        p.setColor(group, QPalette.ColorRole.Text, text)
        p.setColor(group, QPalette.ColorRole.Button, QColor("#21262d"))
        p.setColor(group, QPalette.ColorRole.ButtonText, text)
        p.setColor(group, QPalette.ColorRole.Highlight, QColor("#1f6feb"))
        p.setColor(group, QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
        p.setColor(group, QPalette.ColorRole.ToolTipBase, window)
        p.setColor(group, QPalette.ColorRole.ToolTipText, text)
        p.setColor(group, QPalette.ColorRole.PlaceholderText, QColor(DARK.muted))
        p.setColor(group, QPalette.ColorRole.Link, QColor(DARK.link))
    disabled = QColor("#6e7681")
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


class _VisibleIndicators(QProxyStyle):
    """Fusion outlines check boxes and radio buttons with the window colour darkened, which vanishes on a
    dark window. This style draws them as Fusion does, tick included, with a light outline."""

    OUTLINE_BASE = QColor("#b1bac4")  # Fusion darkens it by 40 %: a grey that stands out on dark fields

    def drawPrimitive(  # noqa: N802 - Qt override
        self,
        element: QStyle.PrimitiveElement,
        option: QStyleOption,
        painter: QPainter,
        widget: QWidget | None = None,
    ) -> None:
        if element in (
            QStyle.PrimitiveElement.PE_IndicatorCheckBox,
            QStyle.PrimitiveElement.PE_IndicatorRadioButton,
            QStyle.PrimitiveElement.PE_IndicatorItemViewItemCheck,
        ):
            option = type(option)(option)
            option.palette.setColor(QPalette.ColorRole.Window, self.OUTLINE_BASE)
        super().drawPrimitive(element, option, painter, widget)


def apply(app: QApplication, mode: str = "system") -> Colors:
    """Style the whole application; returns the colours the HTML renderer should use."""
    colors = resolve(mode)
    # Fusion: the one style that honours a custom palette on every platform.
    app.setStyle(_VisibleIndicators("Fusion") if colors.dark else QStyleFactory.create("Fusion"))
    app.setPalette(_dark_palette() if colors.dark else app.style().standardPalette())
    return colors


MODES = THEMES  # what --theme accepts, and the View menu offers
SETTINGS_KEY = "theme"


def saved_mode() -> str:
    mode = QSettings().value(SETTINGS_KEY, "system")
    return mode if mode in MODES else "system"


def save_mode(mode: str) -> None:
    QSettings().setValue(SETTINGS_KEY, mode)


def follow_system(app: QApplication, on_change: Callable[[Colors], None]) -> None:
    """Re-theme when the system switches between light and dark, unless the user chose a theme."""

    def changed(_scheme: object) -> None:
        if saved_mode() == "system":
            on_change(apply(app, "system"))

    app.styleHints().colorSchemeChanged.connect(changed)
