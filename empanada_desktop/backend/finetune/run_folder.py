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
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import ConfigError, describe_os_error
from empanada_desktop.core.paths import runs_dir

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
LOG_FILE = "finetune.log"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
# Written by the launcher of several processes (finetune.launch) before the processes start.
LAUNCH_CONFIG = "launch.yaml"
PROCESSES_LOG = "processes.log"
STOP_FILE = "STOP"
LAUNCHER_FILES = (LAUNCH_CONFIG, PROCESSES_LOG, STOP_FILE)
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
    """``config.out_dir`` or ``<app home>/runs/<new_name>-<YYYYmmdd-HHMMSS>`` (made unique).

    A given ``out_dir`` must be new, empty, or a run that never reached its first checkpoint
    (it is started again from scratch); a folder holding other files is refused, naming them, so
    a user's own config.yaml or logs are never overwritten or appended to.
    """
    if config.out_dir is not None:
        run_dir = Path(config.out_dir)
        check_out_dir(run_dir)
        if (run_dir / METRICS_FILE).is_file():
            truncate_metrics(run_dir, -1)  # the records of the attempt that never saved a checkpoint
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = runs_dir() / f"{config.new_name}-{stamp}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = runs_dir() / f"{config.new_name}-{stamp}-{suffix}"
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    return run_dir


def check_out_dir(run_dir: Path) -> None:
    """Raise ConfigError unless ``run_dir`` may receive a new run (see ``new_run_dir``)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a folder for the run (a new or empty one).")
    if last_checkpoint(run_dir).exists():
        raise ConfigError(
            f"run folder {run_dir} already holds a run; resume it with --resume {run_dir} "
            "or choose another folder."
        )
    if not run_dir.is_dir():
        return
    entries = sorted(p.name for p in run_dir.iterdir() if p.name not in LAUNCHER_FILES)
    if not entries or _is_run(run_dir):
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise ConfigError(
        f"--out {run_dir} already holds files that are not a finetuning run ({shown}); they would be "
        "overwritten. Choose a new or empty folder, or leave out --out to use the app's runs folder."
    )


def _is_run(run_dir: Path) -> bool:
    """A run folder of ours: its config.yaml has a ``finetune`` section and nothing else is foreign."""
    try:
        document = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    if not (isinstance(document, dict) and isinstance(document.get("finetune"), dict)):
        return False
    ours = {CONFIG_FILE, LOG_FILE, METRICS_FILE, CHECKPOINT_DIR, *LAUNCHER_FILES}
    return all(p.name in ours or p.name.startswith(".") for p in run_dir.iterdir())


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

    # Runs saved before these settings existed trained with empanada's recipe: keep it on resume.
    legacy = {"encoder_lr_scale": 1.0, "grad_clip": 0.0}
    for name in ("train", "finetune"):
        section = document.get(name) if isinstance(document, dict) else None
        if isinstance(section, dict):
            return config_class(name).from_dict(legacy | section)
    raise ConfigError(f"{run_dir / CONFIG_FILE} has no 'finetune' section (nor the 'train' section of a "
                      "new model); the run cannot be resumed.")


def resume_config(run_dir: str | Path, device: str | None = None) -> FinetuneConfig:
    """The config that continues the run in ``run_dir``: the saved one, writing into that folder.

    ``device`` replaces the saved device (the computer may have changed); None keeps it.

    Raises:
        ConfigError: not a run folder; the run has finished (the message says what is left to
            do); or it has no checkpoint yet (the message gives the command that starts it again).
    """
    run_dir = Path(run_dir)
    saved = read_config(run_dir)
    pth, _ = exported_files(run_dir, saved.new_name)
    if pth.is_file():
        raise ConfigError(finished_run_message(run_dir, saved))
    if not last_checkpoint(run_dir).is_file():
        raise ConfigError(
            f"run {run_dir} has no checkpoint yet (it was stopped before its first one), so there is "
            f"nothing to resume; start it again in the same folder: {restart_command(saved, run_dir)}"
        )
    return saved.replace(out_dir=run_dir, resume=run_dir, device=saved.device if device is None else device)


def finished_run_message(run_dir: Path, config: FinetuneConfig) -> str:
    """What a finished run left and what is still to do (register it, or export it for napari)."""
    from empanada_desktop.core.registry import ModelRegistry

    pth, _ = exported_files(run_dir, config.new_name)
    try:
        registered = {m.name for m in ModelRegistry().list() if m.registered}
    except OSError:
        registered = set()
    if config.new_name in registered:
        return (f"run {run_dir} has finished: its model {pth} is registered as {config.new_name}. Nothing to "
                f"resume; to use it in empanada-napari: empanada-desktop models export {config.new_name} DIR")
    return (f"run {run_dir} has finished: its model is {pth} (not registered). Nothing to resume; register "
            f"it with: empanada-desktop models import {pth} --name NAME (NAME: {config.new_name}, or another "
            "name if that one is taken)")


def restart_command(config: FinetuneConfig, run_dir: Path) -> str:
    """The ``empanada-desktop finetune`` command that starts ``config`` again in ``run_dir``."""
    parts = ["empanada-desktop", "finetune", "--model", config.model]
    for folder in config.train_dirs:
        parts += ["--train", str(folder)]
    if config.val_dir is not None:
        parts += ["--val", str(config.val_dir)]
    parts += ["--layers", config.layers, "--iterations", str(config.iterations), "--patch-size",
              str(config.patch_size), "--batch-size", str(config.batch_size), "--name", config.new_name,
              "--out", str(run_dir), "--seed", str(config.seed)]
    if config.duplicate_patches:
        parts.append("--duplicate-patches")
    if not config.register:
        parts.append("--no-register")
    return " ".join(shlex.quote(part) for part in parts)


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
    """One JSON object per line; appended (a torn last line is skipped by ``read_metrics``).

    Under torchrun only rank 0 writes. A full or read-only disk loses the record (logged) rather
    than the run.
    """
    if not _writes():
        return
    path = Path(run_dir) / METRICS_FILE
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as error:
        log.warning("metrics of step %s not recorded: %s", record.get("step"), describe_os_error(error, path))


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


class _QuietFileHandler(logging.FileHandler):
    """A log file that, on a full or read-only disk, drops lines instead of printing tracebacks."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.dropped = getattr(self, "dropped", 0) + 1


class RunLog:
    """The run's ``finetune.log`` while the run lasts.

    ``RunLog.info(...)`` writes the run's own story (settings, steps, validations) to the file
    only, so the CLI's progress bar is not interleaved with it. Warnings and errors of the whole
    package reach the file too, without changing what reaches the console.
    """

    def __init__(self, run_dir: str | Path) -> None:
        # Under torchrun only rank 0 writes the log.
        self.handler = (_QuietFileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8") if _writes()
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
