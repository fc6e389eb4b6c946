"""Light and dark themes: Qt's Fusion style with a palette, and matching pyqtgraph colours."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("light", "dark")


def configure_pyqtgraph() -> None:
    """pyqtgraph's global options, set once before any view is built: images are indexed
    (row, col) like numpy arrays, and drawn without antialiasing (sharp pixels)."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def _dark_palette() -> QPalette:
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#2b2b2e",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1e1e20",
        QPalette.ColorRole.AlternateBase: "#2f2f33",
        QPalette.ColorRole.ToolTipBase: "#3a3a3f",
        QPalette.ColorRole.ToolTipText: "#f0f0f0",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#35353a",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.BrightText: "#ff6b6b",
        QPalette.ColorRole.Highlight: "#3d7bd9",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#6ea8ff",
        QPalette.ColorRole.PlaceholderText: "#8a8a8a",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return palette


def apply_theme(theme: str, app: QApplication | None = None) -> str:
    """Apply "light" or "dark" (anything else means light); returns the theme applied."""
    app = app or QApplication.instance()
    theme = theme if theme in THEMES else "light"
    app.setStyle("Fusion")
    if theme == "dark":
        app.setPalette(_dark_palette())
        pg.setConfigOptions(background="#141416", foreground="#d0d0d0")
    else:
        app.setPalette(app.style().standardPalette())
        pg.setConfigOptions(background="#202020", foreground="#303030")
    app.setProperty("empanada_theme", theme)
    return theme


def current_theme(app: QApplication | None = None) -> str:
    app = app or QApplication.instance()
    return app.property("empanada_theme") or "light"
