"""The screens that ``empanada-desktop screenshots`` renders, registered by the panels.

Each panel registers its screens at import time of its own module::

    from empanada_desktop.ui.shell.screen_registry import register_screen
    register_screen("inference_panel", lambda: InferencePanel(...))

A factory returns a QWidget ready to show (it may also return ``(widget, (width, height))``).
``ui.shell.screenshots`` renders them.
"""

from __future__ import annotations

from collections.abc import Callable

_SCREENS: dict[str, Callable[[], object]] = {}


def register_screen(name: str, factory: Callable[[], object]) -> None:
    """Register a screen: ``factory()`` returns a QWidget or ``(widget, (width, height))``."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"screen name {name!r} must be a plain file name without spaces")
    _SCREENS[name] = factory


def registered_screens() -> list[str]:
    return sorted(_SCREENS)


def screen_factory(name: str) -> Callable[[], object]:
    return _SCREENS[name]
