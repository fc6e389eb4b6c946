"""Screenshots of every main screen, offscreen, for reviews and the README.

Each part registers its screens at import time of its own module::

    from empanada_desktop.ui.screenshots import register_screen
    register_screen("inference_panel", lambda: InferencePanel(...))

A factory returns a QWidget ready to show (it may also return ``(widget, (width, height))``).
``render_all`` imports every module of ``empanada_desktop.ui`` (so registrations run), shows each
widget offscreen, lets the event loop settle and saves ``<name>.png``.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_SCREENS: dict[str, Callable[[], object]] = {}
DEFAULT_SIZE = (1200, 800)
# Modules that only start things; importing them must not have side effects, but skip anyway.
_SKIP_MODULES = {"empanada_desktop.ui.app", "empanada_desktop.ui.screenshots"}


def register_screen(name: str, factory: Callable[[], object]) -> None:
    """Register a screen: ``factory()`` returns a QWidget or ``(widget, (width, height))``."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"screen name {name!r} must be a plain file name without spaces")
    _SCREENS[name] = factory


def registered_screens() -> list[str]:
    return sorted(_SCREENS)


def import_ui_modules() -> list[str]:
    """Import every module of the ui package so their ``register_screen`` calls run."""
    import empanada_desktop.ui as ui_package

    failed = []
    for info in pkgutil.walk_packages(ui_package.__path__, prefix="empanada_desktop.ui."):
        if info.name in _SKIP_MODULES or info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception:  # one broken panel must not stop the other screenshots
            log.exception("could not import %s for screenshots", info.name)
            failed.append(info.name)
    return failed


def render_all(out_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """Render the registered screens (all, or ``names``) to ``out_dir/<name>.png``."""
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.theme import apply_theme

    app = QApplication.instance() or QApplication([])
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
    import_ui_modules()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(names or []) - set(_SCREENS))
    if unknown:
        from empanada_desktop.core.errors import UserError

        raise UserError(f"Unknown screen(s) {', '.join(unknown)}; known: {', '.join(registered_screens())}")
    written = []
    for name in sorted(names or _SCREENS):
        try:
            written.append(render_one(name, out_dir / f"{name}.png", app))
        except Exception:
            log.exception("screen %s failed to render", name)
    return written


def render_one(name: str, out_path: Path, app=None) -> Path:
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.core.atomic import atomic_path

    app = app or QApplication.instance()
    made = _SCREENS[name]()
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
