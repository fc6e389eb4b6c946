"""Settings remembered between sessions (window geometry, recent files, theme)."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from empanada_desktop.core.paths import app_home


def app_settings() -> QSettings:
    """Settings remembered between sessions, in the app home (tests get their own)."""
    return QSettings(str(app_home() / "settings.ini"), QSettings.Format.IniFormat)
