"""Checkpoints: one dict with fixed keys, written atomically, read back without unpickling code.

Keys: ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler``, ``step`` (optimiser steps
done), ``config`` (``FinetuneConfig.to_dict()``), ``rng`` (torch CPU and CUDA generator states),
``version`` (format version), plus ``extra`` (baseline, latest and best validation).

``atomic_path`` writes to a temporary file and renames it over the old checkpoint only once the
new one is complete and fsynced, so a crash, a kill or a full disk during the write leaves the
previous checkpoint intact (the stray temporary file is removed by the next save).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from empanada_desktop.backend.safe_save import save_torch
from empanada_desktop.core import atomic
from empanada_desktop.core.errors import DiskError, UserError

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("model", "optimizer", "scheduler", "scaler", "step", "config", "rng", "version")


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated or not one of ours."""


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError, IndexError):  # fewer GPUs now than when saved
            torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_temporaries(folder: Path) -> None:
    """Delete temporary files left by a write that was killed (``.<name>.*.tmp``)."""
    atomic.remove_stale_temporaries(folder)


class CheckpointWriteError(DiskError):
    """A checkpoint could not be written; the previous one is unchanged."""


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` to ``path`` atomically; returns ``path``.

    Raises:
        CheckpointWriteError: the disk is full, read-only or not writable; the message names the
            file and says that the previous checkpoint stays usable.
    """
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks keys {missing}")
    path = Path(path)
    remove_stale_temporaries(path.parent)
    try:
        save_torch(checkpoint, path)
    except DiskError as error:
        raise CheckpointWriteError(f"{error} The previous checkpoint is unchanged.") from error
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True`` (no code runs from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({error.__class__.__name__}); it may be truncated. "
            "Resume from best.pt or start a new run."
        ) from error
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not an empanada-desktop finetuning checkpoint.")
    if int(checkpoint["version"]) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} was written by a newer empanada-desktop (format {checkpoint['version']}); update the app."
        )
    return checkpoint


def checkpoint_size_ok(path: Path) -> bool:
    return Path(path).is_file() and os.path.getsize(path) > 0
