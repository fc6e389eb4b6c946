"""What the finetune wizard's pages choose and pass on, in one object the wizard holds.

Each page reads what the pages before it chose and writes its own choices when the user goes on
(``validatePage``). They are plain attributes rather than QWizard fields because most are paths,
lists or config objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names for the annotations only: importing them here would import torch
    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.loop import FinetuneResult
    from empanada_desktop.backend.finetune.run_folder import ResumableRun


@dataclass
class WizardState:
    """The choices made so far; set by the page named in each comment."""

    model_name: str | None = None  # model page (or the resumed run's model)
    resume_run: ResumableRun | None = None  # model page: the unfinished run to continue
    train_dirs: list[Path] = field(default_factory=list)  # data page
    val_dir: Path | None = None  # data page
    train_count: int = 0  # data page: image/mask pairs found in train_dirs
    remedy: str | None = None  # data page: what to do with fewer pairs than a batch
    new_model: dict | None = None  # new-model page: TrainConfig fields of a new model (None: finetune)
    processes: int = 1  # settings page: more than 1 trains on all GPUs through torchrun
    config: FinetuneConfig | None = None  # settings page (or the resumed run's config)
    result: FinetuneResult | None = None  # run page
