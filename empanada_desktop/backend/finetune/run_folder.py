"""The run folder of one finetuning run: everything needed to understand it and to resume it.

Layout::

    <run_dir>/config.yaml          finetune: the FinetuneConfig; run: what the run found out
    <run_dir>/finetune.log         the run's own log (settings, steps, validations)
    <run_dir>/metrics.jsonl        one JSON record per step / validation
    <run_dir>/checkpoints/last.pt  the latest checkpoint (resume from here)
    <run_dir>/checkpoints/best.pt  the checkpoint of the best validation
    <run_dir>/<new_name>.pth/.yaml the exported model, once the run has finished

A folder with a config and ``last.pt`` but no exported model was stopped or crashed: it is
resumable. This module is the only reader of ``config.yaml``; it needs no torch.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.paths import runs_dir

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LOG_FILE = "finetune.log"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def _writes() -> bool:
    """Whether this process writes the run folder (under torchrun only rank 0 does). Imported
    here, not at the top: reading run folders (the wizard's first page) must not import torch."""
    from empanada_desktop.backend import distributed

    return distributed.is_main()


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST


def best_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / BEST


def exported_files(run_dir: str | Path, new_name: str) -> tuple[Path, Path]:
    """Where a finished run's model is exported: ``<run_dir>/<new_name>.pth`` and ``.yaml``."""
    return Path(run_dir) / f"{new_name}.pth", Path(run_dir) / f"{new_name}.yaml"


# -- making a run folder and its config.yaml ----------------------------------------------------


def new_run_dir(config: FinetuneConfig) -> Path:
    """``config.out_dir`` or ``<app home>/runs/<new_name>-<YYYYmmdd-HHMMSS>`` (made unique)."""
    if config.out_dir is not None:
        run_dir = Path(config.out_dir)
        if last_checkpoint(run_dir).exists():
            raise ConfigError(
                f"run folder {run_dir} already holds a run; resume it with --resume {run_dir} "
                "or choose another folder."
            )
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = runs_dir() / f"{config.new_name}-{stamp}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = runs_dir() / f"{config.new_name}-{stamp}-{suffix}"
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    return run_dir


def write_config(run_dir: str | Path, config: FinetuneConfig, found: dict[str, Any]) -> None:
    """The full config plus what the run found out (trainable counts, precision, data size).

    The config goes under ``finetune:`` or, for a new model, ``train:`` (``TrainConfig.SECTION``).
    """
    if not _writes():
        return
    document = {getattr(config, "SECTION", "finetune"): config.to_dict(), "run": found}
    write_text(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(document, sort_keys=False))


def _read_document(run_dir: Path) -> Any:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} is not a finetuning run folder (no {CONFIG_FILE}); choose the folder of the run to resume."
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); the run cannot be resumed.") from error
    return document


def read_config(run_dir: str | Path) -> FinetuneConfig:
    """The ``FinetuneConfig`` saved in ``run_dir/config.yaml`` (as it was started)."""
    run_dir = Path(run_dir)
    document = _read_document(run_dir)
    from empanada_desktop.backend.finetune.train_config import config_class

    for name in ("train", "finetune"):
        section = document.get(name) if isinstance(document, dict) else None
        if isinstance(section, dict):
            return config_class(name).from_dict(section)
    raise ConfigError(f"{run_dir / CONFIG_FILE} has no 'finetune' section (nor the 'train' section of a new model); the run cannot be resumed.")


def resume_config(run_dir: str | Path, device: str | None = None) -> FinetuneConfig:
    """The config that continues the run in ``run_dir``: the saved one, writing into that folder.

    ``device`` replaces the saved device (the computer may have changed); None keeps it.
    """
    run_dir = Path(run_dir)
    saved = read_config(run_dir)
    return saved.replace(out_dir=run_dir, resume=run_dir, device=saved.device if device is None else device)


# -- resumable runs ---------------------------------------------------------------------------


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


def read_run(run_dir: str | Path) -> ResumableRun | None:
    """The run in ``run_dir`` if it can be resumed, else None (finished, or no checkpoint)."""
    run_dir = Path(run_dir)
    checkpoint = last_checkpoint(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not checkpoint.is_file():
        return None
    try:
        document = _read_document(run_dir) or {}
    except ConfigError as error:
        log.warning("skipping run %s: %s", run_dir, error)
        return None
    if not isinstance(document, dict):
        return None
    data = next((document[k] for k in ("train", "finetune") if isinstance(document.get(k), dict)), document)
    new_name = str(data.get("new_name", run_dir.name))
    if exported_files(run_dir, new_name)[0].is_file():
        return None  # finished and exported
    try:
        iterations = int(data.get("iterations", 0) or 0)
    except (TypeError, ValueError):
        iterations = 0
    return ResumableRun(run_dir=run_dir, model=str(data.get("model", "?")), new_name=new_name,
                        iterations=iterations, checkpoint=checkpoint, modified=checkpoint.stat().st_mtime)


def find_resumable_runs(root: str | Path | None = None) -> list[ResumableRun]:
    """Resumable runs under ``root`` (default: the app's runs folder), newest first."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    runs = [run for path in sorted(root.iterdir()) if path.is_dir() for run in [read_run(path)] if run is not None]
    return sorted(runs, key=lambda run: run.modified, reverse=True)


# -- metrics.jsonl ----------------------------------------------------------------------------


def append_metrics(run_dir: str | Path, record: dict[str, Any]) -> None:
    """One JSON object per line; appended (a torn last line is skipped by ``read_metrics``)."""
    if not _writes():
        return
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir: str | Path, after_step: int) -> None:
    """Drop step records past the checkpoint being resumed (they will be redone)."""
    if not _writes():
        return
    records = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= after_step]
    write_text(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))


# -- finetune.log -----------------------------------------------------------------------------


class RunLog:
    """The run's ``finetune.log`` while the run lasts.

    ``RunLog.info(...)`` writes the run's own story (settings, steps, validations) to the file
    only, so the CLI's progress bar is not interleaved with it. Warnings and errors of the whole
    package reach the file too, without changing what reaches the console.
    """

    def __init__(self, run_dir: str | Path) -> None:
        # Under torchrun only rank 0 writes the log.
        self.handler = (logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8") if _writes()
                        else logging.NullHandler())
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.package_logger = logging.getLogger("empanada_desktop")
        self.run_logger = logging.getLogger(f"empanada_desktop.finetune.run.{id(self)}")
        self.run_logger.propagate = False
        self.run_logger.setLevel(logging.INFO)

    def info(self, message: str, *args: Any) -> None:
        self.run_logger.info(message, *args)

    def __enter__(self) -> RunLog:
        self.package_logger.addHandler(self.handler)
        self.run_logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc) -> None:
        self.package_logger.removeHandler(self.handler)
        self.run_logger.removeHandler(self.handler)
        self.handler.close()
        logging.Logger.manager.loggerDict.pop(self.run_logger.name, None)
