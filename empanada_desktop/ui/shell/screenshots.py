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
import empanada_desktop.ui.wizard.screens  # noqa: F401 - registers the wizard's pages
from empanada_desktop.ui.shell.screen_registry import registered_screens, screen_factory

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1200, 800)


def render_all(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Render the registered screens (all, or ``names``) to ``out_dir/<name>.png``."""
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import apply_theme, configure_pyqtgraph

    app = QApplication.instance() or QApplication([])
    configure_pyqtgraph()
    apply_theme("light", app)
    # Screens open windows that keep settings and autosaves: keep them away from the user's.
    previous_home = os.environ.get("EMPANADA_DESKTOP_HOME")
    scratch = tempfile.TemporaryDirectory(prefix="empanada-screens-")
    os.environ["EMPANADA_DESKTOP_HOME"] = scratch.name
    try:
        return _render(out_dir, names, app)
    finally:
        if previous_home is None:
            os.environ.pop("EMPANADA_DESKTOP_HOME", None)
        else:
            os.environ["EMPANADA_DESKTOP_HOME"] = previous_home
        scratch.cleanup()


def _render(out_dir, names, app) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names or []) - set(registered_screens()))
    if unknown:
        from empanada_desktop.core.errors import UserError

        raise UserError(f"Unknown screen(s) {', '.join(unknown)}; known: {', '.join(registered_screens())}")
    written = []
    for name in sorted(names or registered_screens()):
        try:
            written.append(render_one(name, out_dir / f"{name}.png", app))
        except Exception:
            log.exception("screen %s failed to render", name)
    return written


def render_one(name: str, out_path: Path, app=None) -> Path:
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.core.atomic import atomic_path

    app = app or QApplication.instance()
    made = screen_factory(name)()
    widget, size = made if isinstance(made, tuple) else (made, None)
    widget.resize(*(size or DEFAULT_SIZE))
    widget.show()
    for _ in range(5):
        app.processEvents()
    pixmap = widget.grab()
    with atomic_path(out_path) as tmp:
        if not pixmap.save(str(tmp), "PNG"):
            raise OSError(f"could not write {out_path}")
    widget.close()
    widget.deleteLater()
    app.processEvents()
    log.info("wrote %s", out_path)
    return out_path
