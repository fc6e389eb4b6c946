"""Finetuning runs that can be resumed: folders under ``app_home()/runs`` with a checkpoint.

A run folder (``backend/finetune/run.py``) holds ``config.yaml`` (``finetune:`` the
FinetuneConfig, ``run:`` what the run found out) and ``checkpoints/last.pt``; a run that ended
normally also holds its exported ``<new_name>.pth``. A run with a config and a checkpoint but no
exported model was cancelled or crashed, and the loop continues it from its last checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from empanada_desktop.core.paths import runs_dir

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.pt"


@dataclass(frozen=True)
class ResumableRun:
    run_dir: Path
    model: str
    new_name: str
    iterations: int
    checkpoint: Path
    modified: float

    @property
    def label(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.modified))
        return (f"{self.new_name} (from {self.model}, {self.iterations} iterations), "
                f"last saved {when}")


def read_run(run_dir: Path) -> ResumableRun | None:
    """The run in ``run_dir`` if it can be resumed, else None (finished, or no checkpoint)."""
    config_path = run_dir / "config.yaml"
    checkpoint = run_dir / CHECKPOINT
    if not config_path.is_file() or not checkpoint.is_file():
        return None
    try:
        data = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        log.warning("skipping run %s: unreadable config.yaml (%s)", run_dir, error)
        return None
    if not isinstance(data, dict):
        return None
    data = data.get("finetune", data) if isinstance(data.get("finetune"), dict) else data
    new_name = str(data.get("new_name", run_dir.name))
    if (run_dir / f"{new_name}.pth").is_file():
        return None  # finished and exported
    return ResumableRun(run_dir=run_dir, model=str(data.get("model", "?")),
                        new_name=new_name,
                        iterations=int(data.get("iterations", 0) or 0), checkpoint=checkpoint,
                        modified=checkpoint.stat().st_mtime)


def find_resumable_runs(root: Path | None = None) -> list[ResumableRun]:
    """Resumable runs, newest first."""
    root = Path(root) if root is not None else runs_dir()
    runs = [run for path in sorted(root.iterdir()) if path.is_dir()
            for run in [read_run(path)] if run is not None] if root.is_dir() else []
    return sorted(runs, key=lambda run: run.modified, reverse=True)
