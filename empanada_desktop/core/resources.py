"""Where the files shipped with the app live (built-in model configs, demo data, icons).

In a source checkout (or an editable install) they are the repository's top-level
``resources/`` folder; in a frozen PyInstaller app they are ``sys._MEIPASS/resources`` (the
packaging spec must copy the folder there under that name).
"""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    """The folder holding ``models/``, ``demo/`` and the other shipped resources."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def builtin_config_dir() -> Path:
    """The built-in model configs: ``<name>.yaml`` in empanada's schema."""
    return resources_dir() / "models"


def bundled_weights_dir() -> Path:
    """Weight files an installer bundled (``packaging/build.py --models DIR``); may not exist."""
    return resources_dir() / "models_weights"


def demo_dir() -> Path:
    """The demo data: ``em_stack.tif``, its ``em_stack_labels.tif`` and ``training_set/``."""
    return resources_dir() / "demo"
