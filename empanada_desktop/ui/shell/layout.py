"""Keeping the window usable on a laptop screen (1366 x 768): panels scroll instead of
forcing the window taller than the screen."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QWidget


def scrollable(widget: QWidget) -> QScrollArea:
    """``widget`` inside a vertical scroll area as wide as the widget needs.

    A dock's minimum height is then a few lines instead of the whole panel, so the main window
    never asks for more than the screen has; the panel scrolls when its dock is short.
    """
    area = QScrollArea()
    area.setObjectName(f"scroll_{widget.objectName() or type(widget).__name__}")
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    bar = area.verticalScrollBar().sizeHint().width()
    area.setMinimumWidth(widget.minimumSizeHint().width() + bar + 2)
    area.setMinimumHeight(min(widget.minimumSizeHint().height(), 120))
    return area


def panel_of(dock) -> QWidget:
    """The panel a dock shows (inside its scroll area)."""
    inner = dock.widget()
    return inner.widget() if isinstance(inner, QScrollArea) else inner


def fit_to_screen(widget: QWidget, width: int, height: int):
    """``(width, height)`` shrunk to the available area of the screen ``widget`` is on."""
    from PySide6.QtCore import QSize
    from PySide6.QtGui import QGuiApplication

    screen = widget.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        return QSize(width, height)
    available = screen.availableGeometry()
    # Leave room for the window frame and title bar, which the geometry does not include.
    return QSize(min(width, available.width() - 16), min(height, available.height() - 48))
