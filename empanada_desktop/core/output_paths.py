"""Rules for files a command is about to write: never one of its inputs, never silently replaced."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from empanada_desktop.core.errors import ConfigError


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths are one file (through links, ``..`` and case-insensitive file systems)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they point
        return Path(a).resolve() == Path(b).resolve()


def check_output_file(
    output: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str]],
    *,
    overwrite: bool,
    flag: str = "--overwrite",
) -> Path:
    """Refuse an ``output`` that is one of ``inputs``, and an existing one unless ``overwrite``.

    Raises:
        ConfigError: naming the file and what to do.
    """
    output = Path(output)
    for source in inputs:
        if same_file(output, source):
            raise ConfigError(
                f"the output {output} is the input {source}: writing it would destroy your image; "
                "choose another output file."
            )
    if output.is_dir():
        raise ConfigError(f"the output {output} is a folder; give a file name (e.g. {output / 'labels.tif'}).")
    if output.exists() and not overwrite:
        raise ConfigError(
            f"{output} already exists; choose another output file, or add {flag} to replace it."
        )
    return output
