"""The run folder: ``config.yaml``, ``finetune.log``, ``metrics.jsonl``, ``checkpoints/``.

A run folder is everything needed to understand a run afterwards and to resume it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.paths import runs_dir

CONFIG_FILE = "config.yaml"
LOG_FILE = "finetune.log"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
BEST = "best.pt"


def new_run_dir(config: FinetuneConfig) -> Path:
    """``config.out_dir`` or ``<app home>/runs/<new_name>-<YYYYmmdd-HHMMSS>`` (made unique)."""
    if config.out_dir is not None:
        run_dir = Path(config.out_dir)
        if (run_dir / CHECKPOINT_DIR / LAST).exists():
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


def write_run_config(run_dir: Path, config: FinetuneConfig, extra: dict[str, Any]) -> None:
    """The full config plus what the run found out (trainable counts, precision, data size)."""
    document = {"finetune": config.to_dict(), "run": extra}
    write_text(run_dir / CONFIG_FILE, yaml.safe_dump(document, sort_keys=False))


def read_run_config(run_dir: Path) -> FinetuneConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a finetuning run folder (no {CONFIG_FILE}); choose the folder of the run to resume.")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); the run cannot be resumed.") from error
    if not isinstance(document, dict) or not isinstance(document.get("finetune"), dict):
        raise ConfigError(f"{path} has no 'finetune' section; the run cannot be resumed.")
    return FinetuneConfig.from_dict(document["finetune"])


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    """One JSON object per line; appended (a torn last line is skipped by ``read_metrics``)."""
    with open(Path(run_dir) / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
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


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop step records past the checkpoint being resumed (they will be redone)."""
    records = [r for r in read_metrics(run_dir) if int(r.get("step", 0)) <= after_step]
    write_text(Path(run_dir) / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records))


class RunLog:
    """The run's ``finetune.log`` while the run lasts.

    ``RunLog.info(...)`` writes the run's own story (settings, steps, validations) to the file
    only, so the CLI's progress bar is not interleaved with it. Warnings and errors of the whole
    package reach the file too, without changing what reaches the console.
    """

    def __init__(self, run_dir: Path) -> None:
        self.handler = logging.FileHandler(Path(run_dir) / LOG_FILE, encoding="utf-8")
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
