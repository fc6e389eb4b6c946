"""The one rule for model names, checked before anything is trained, copied or written.

A model name becomes file names (``<name>.pth``, ``<name>.yaml``) and a folder of the app home,
here and in empanada-napari's ``~/.empanada/configs``, on Linux, macOS and Windows. The CLI, the
finetune config (so the wizard too), the TorchScript exporter and the registry all call
:func:`check_model_name`, so a name that passes at the start of a run is accepted at its end.
"""

from __future__ import annotations

import re

from empanada_desktop.core.errors import ConfigError, UserError

MAX_NAME_LENGTH = 64
_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Names Windows refuses as file stems, whatever the suffix.
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)}

RULE = (f"use 1-{MAX_NAME_LENGTH} letters, digits, '_', '-' or '.', starting with a letter or digit "
        "and not ending with '.' (it becomes a file name)")


def model_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a model name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a model name is needed"
    if len(name) > MAX_NAME_LENGTH:
        return f"it is {len(name)} characters long, at most {MAX_NAME_LENGTH} are allowed"
    if not _PATTERN.match(name):
        return "it contains a character other than letters, digits, '_', '-' or '.', or starts with one"
    if name.endswith("."):
        return "it ends with '.'"
    if name.split(".")[0].casefold() in _WINDOWS_RESERVED:
        return "Windows reserves that name for a device"
    return None


def check_model_name(name: object, error_type: type[UserError] = ConfigError, field: str = "") -> str:
    """Return ``name`` if it follows the rule; else raise ``error_type`` saying why and what to use.

    ``field`` (e.g. ``"new_name"``, ``"--name"``) starts the message, naming the setting at fault.
    """
    problem = model_name_problem(name)
    if problem is not None:
        prefix = f"{field}: " if field else ""
        raise error_type(f"{prefix}{name!r} cannot be a model name ({problem}); {RULE}.")
    return name  # type: ignore[return-value]
