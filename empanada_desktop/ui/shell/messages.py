"""Message boxes for problems the user can fix: a title and a plain sentence, never a traceback."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)


def show_error(parent: QWidget | None, title: str, message: str) -> QMessageBox:
    """Show ``message`` in a window-modal message box that does not block the caller; returns it."""
    log.warning("%s: %s", title, message)
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setObjectName("errorBox")
    box.setModal(True)
    box.open()
    return box
