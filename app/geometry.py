"""Window sizes that fit the screen they open on."""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

SCREEN_SHARE = 0.92  # a first window leaves a margin of the screen free


def resize_to_fit(window: QWidget, width: int, height: int) -> None:
    """Resize `window` to width × height, or less where the screen's free area is smaller (a 1024 × 700
    screen must not get a window wider than itself)."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is not None:
        free = screen.availableGeometry()
        width = min(width, int(free.width() * SCREEN_SHARE))
        height = min(height, int(free.height() * SCREEN_SHARE))
    window.resize(width, height)
