"""Before a run starts: is there disk space for its checkpoints, its export and its registration?

The sizes come from the model being trained: its state (parameters and buffers) and its
trainable parameters, whose two AdamW moments every checkpoint also holds. ``core.disk_space``
adds them up per disk and says how much is missing. A resumed run first deletes the temporary
files a killed write left behind (they can be as large as a model) and counts the checkpoints it
already has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from empanada_desktop.backend.finetune import run_folder
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.atomic import remove_stale_temporaries
from empanada_desktop.core.disk_space import check_free_space, run_space_needed
from empanada_desktop.core.paths import models_dir, runs_dir

log = logging.getLogger(__name__)


def model_sizes(model: torch.nn.Module) -> tuple[int, int]:
    """Bytes of the model's whole state and of its trainable parameters."""
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values() if isinstance(t, torch.Tensor))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return int(state), int(trainable)


def check_run_space(model: torch.nn.Module, config: FinetuneConfig, *, resuming: bool, validation: bool) -> None:
    """Raise DiskError (how much is needed, free and missing) unless the run's disks have room."""
    if resuming:
        folder = Path(config.resume)
        for stray_dir in (folder, run_folder.last_checkpoint(folder).parent):
            for stray in remove_stale_temporaries(stray_dir):
                log.info("removed %s, left by a write that was interrupted", stray)
        written = sum(p.stat().st_size for p in (run_folder.last_checkpoint(folder), run_folder.best_checkpoint(folder))
                      if p.is_file())
    else:
        folder = Path(config.out_dir) if config.out_dir is not None else runs_dir()
        written = 0
    model_bytes, trainable_bytes = model_sizes(model)
    needs = run_space_needed(folder, models_dir() if config.register else None, model_bytes=model_bytes,
                             trainable_bytes=trainable_bytes, validation=validation, already_written=written)
    check_free_space(needs)


def check_space_from_counts(config: FinetuneConfig, counts: dict[str, int], *, register: bool = True) -> None:
    """The same check from trainable-parameter counts (the wizard has them before any model loads).

    ``counts["all"]`` is every parameter, ``counts[config.layers]`` the trainable ones (float32).
    Buffers (BatchNorm statistics) add about 1 %. Does nothing without counts.
    """
    if "all" not in counts or config.layers not in counts:
        return
    model_bytes = int(counts["all"] * 4 * 1.01)
    folder = Path(config.out_dir) if config.out_dir is not None else runs_dir()
    needs = run_space_needed(folder, models_dir() if register else None, model_bytes=model_bytes,
                             trainable_bytes=int(counts[config.layers] * 4), validation=config.val_dir is not None)
    check_free_space(needs)
