"""Screenshots of every main screen, offscreen, for reviews and the README.

The panels register their screens (``ui.shell.screen_registry.register_screen``) when their
modules are imported; importing the main window imports every panel, and the wizard's screens
come from ``ui.wizard.screens``. ``render_all`` shows each registered widget offscreen, lets the
event loop settle and saves ``<name>.png``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import empanada_desktop.ui.shell.main_window  # noqa: F401 - registers the window and its panels
import empanada_desktop.ui.training_data.suggest_screen  # noqa: F401 - registers "suggest_patches"
import empanada_desktop.ui.shell.volume_screens  # noqa: F401 - the window on an OME-Zarr volume
import empanada_desktop.ui.wizard.screens  # noqa: F401 - registers the wizard's pages
from empanada_desktop.ui.shell.screen_registry import registered_screens, screen_factory

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1200, 800)


def render_all(out_dir: str | Path, names: list[str] | None = None,
               screen: tuple[int, int] | None = None) -> list[Path]:
    """Render the registered screens (all, or ``names``) to ``out_dir/<name>.png``.

    With ``screen`` (width, height), windows (the main window, the wizard, dialogs) are shown
    at that size and panels at their own size but never larger; a screen whose minimum size
    does not fit raises :class:`ScreenTooSmall` after all screens are written.
    """
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell import ui_thread_gc
    from empanada_desktop.ui.shell.theme import apply_theme, configure_pyqtgraph

    app = QApplication.instance() or QApplication([])
    ui_thread_gc.install(app)
    configure_pyqtgraph()
    apply_theme("light", app)
    # Screens open windows that keep settings and autosaves: keep them away from the user's.
    previous_home = os.environ.get("EMPANADA_DESKTOP_HOME")
    scratch = tempfile.TemporaryDirectory(prefix="empanada-screens-")
    os.environ["EMPANADA_DESKTOP_HOME"] = scratch.name
    try:
        return _render(out_dir, names, app, screen)
    finally:
        if previous_home is None:
            os.environ.pop("EMPANADA_DESKTOP_HOME", None)
        else:
            os.environ["EMPANADA_DESKTOP_HOME"] = previous_home
        scratch.cleanup()


class ScreenTooSmall(Exception):
    """Some screens need more room than the requested screen size."""


def _render(out_dir, names, app, screen=None) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names or []) - set(registered_screens()))
    if unknown:
        from empanada_desktop.core.errors import UserError

        raise UserError(f"Unknown screen(s) {', '.join(unknown)}; known: {', '.join(registered_screens())}")
    written, too_big = [], []
    for name in sorted(names or registered_screens()):
        try:
            path = render_one(name, out_dir / f"{name}.png", app, screen)
        except ScreenTooSmall as error:
            too_big.append(str(error))
            continue
        except Exception:
            log.exception("screen %s failed to render", name)
            continue
        written.append(path)
    if too_big:
        raise ScreenTooSmall("; ".join(too_big))
    return written


def render_one(name: str, out_path: Path, app=None, screen: tuple[int, int] | None = None) -> Path:
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.core.atomic import atomic_path

    app = app or QApplication.instance()
    made = screen_factory(name)()
    widget, size = made if isinstance(made, tuple) else (made, None)
    width, height = size or DEFAULT_SIZE
    if screen is not None:
        from PySide6.QtWidgets import QDialog, QMainWindow, QWizard

        if isinstance(widget, (QMainWindow, QWizard, QDialog)):
            width, height = screen
        elif widget.minimumSizeHint().height() > screen[1]:
            from empanada_desktop.ui.shell.layout import scrollable

            widget = scrollable(widget)  # as in its dock in the main window: it scrolls
        width, height = min(width, screen[0]), min(height, screen[1])
    widget.resize(width, height)
    widget.show()
    for _ in range(5):
        app.processEvents()
    if screen is not None:
        needed = widget.minimumSizeHint().expandedTo(widget.minimumSize())
        if needed.width() > screen[0] or needed.height() > screen[1]:
            widget.close()
            widget.deleteLater()
            raise ScreenTooSmall(f"{name} needs at least {needed.width()} x {needed.height()} px")
    pixmap = widget.grab()
    with atomic_path(out_path) as tmp:
        if not pixmap.save(str(tmp), "PNG"):
            raise OSError(f"could not write {out_path}")
    widget.close()
    widget.deleteLater()
    app.processEvents()
    log.info("wrote %s", out_path)
    return out_path
