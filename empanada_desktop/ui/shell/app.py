"""Start the desktop app: QApplication, qasync event loop, main window, restore offer.

``python -m empanada_desktop.ui.shell.app [FILE | --demo]`` starts it from a source checkout.
"""

from __future__ import annotations

import asyncio
import logging
import sys

log = logging.getLogger(__name__)


def offer_restore(window) -> bool:
    """If a crash left autosaved annotations, ask whether to restore them; returns True if so."""
    from PySide6.QtWidgets import QMessageBox

    from empanada_desktop.ui.training_data import autosave

    session = autosave.pending()
    if session is None:
        return False
    answer = QMessageBox.question(
        window, "Restore unsaved annotations?",
        autosave.describe(session) + "\n\nRestore them now? (No deletes them.)",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.Yes,
    )
    if answer != QMessageBox.StandardButton.Yes:
        autosave.discard()
        return False
    notes = autosave.restore(window, session)
    if notes:
        QMessageBox.information(window, "Restored", "\n".join(notes))
    window.statusBar().showMessage("Restored the autosaved annotations.", 8000)
    return True


def create_window(files: list[str]):
    """The main window, shown, with ``files`` opened ("--demo" opens the demo volume)."""
    import os

    from PySide6.QtWidgets import QMessageBox

    from empanada_desktop.ui.shell.main_window import MainWindow
    from empanada_desktop.ui.shell.single_instance import claim_app_home, second_window_note

    lock, other = claim_app_home()
    window = MainWindow()
    window.instance_lock = lock  # held as long as the window
    window.show()
    if other is not None:
        # Not the first window on this app home: its own autosave, and no restoring the other's.
        window.autosaver.directory = window.autosaver.directory / f"window-{os.getpid()}"
        QMessageBox.warning(window, "Already open", second_window_note(other))
        restored = False
    else:
        restored = offer_restore(window)
    if not restored:
        for file in files:
            if file == "--demo":
                window.open_demo()
            elif not file.startswith("-"):
                window.open_path(file)
                break
    return window


def run_app(files: list[str]) -> int:
    """Run the desktop app until its window closes; returns the exit status."""
    import qasync
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell import ui_thread_gc
    from empanada_desktop.ui.shell.settings import app_settings
    from empanada_desktop.ui.shell.theme import apply_theme, configure_pyqtgraph

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if QApplication.instance() is None:
        # Fractional scale factors (150 %) stay sharp instead of being rounded.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("empanada-desktop")
    app.setOrganizationName("empanada-desktop")
    configure_pyqtgraph()
    apply_theme(str(app_settings().value("theme", "light")), app)
    ui_thread_gc.install(app)  # cycles are collected on this thread, never in a worker's
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    window = create_window(list(files))  # held here: the window lives as long as the loop
    with loop:
        loop.run_until_complete(closed.wait())
    del window
    return 0


if __name__ == "__main__":
    raise SystemExit(run_app(sys.argv[1:] or ["--demo"]))
