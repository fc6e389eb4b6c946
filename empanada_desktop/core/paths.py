"""Where the app keeps user state.

Everything the app writes on its own (registered models, finetuning runs, autosaves, settings)
lives under one folder, the *app home*: the platform's user data directory, or the folder named
by the environment variable ``EMPANADA_DESKTOP_HOME``. Tests always set that variable.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "EMPANADA_DESKTOP_HOME"
EMPANADA_DIR_ENV = "EMPANADA_DESKTOP_EMPANADA_DIR"


def app_home() -> Path:
    """Return the app home folder, creating it if needed."""
    override = os.environ.get(HOME_ENV)
    if override:
        home = Path(override).expanduser()
    else:
        import platformdirs

        home = Path(platformdirs.user_data_dir("empanada-desktop", appauthor=False))
    home.mkdir(parents=True, exist_ok=True)
    return home


def subdir(name: str) -> Path:
    """Return ``app_home()/name``, creating it if needed."""
    path = app_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    return subdir("models")


def runs_dir() -> Path:
    return subdir("runs")


def autosave_dir() -> Path:
    return subdir("autosave")


def empanada_user_dir() -> Path:
    """The folder empanada-napari downloads weights to (``~/.empanada``).

    ``EMPANADA_DESKTOP_EMPANADA_DIR`` overrides it (tests point it at a fake one).
    """
    override = os.environ.get(EMPANADA_DIR_ENV)
    return Path(override).expanduser() if override else Path.home() / ".empanada"
