"""A run in several local processes, started from the app: ``torchrun`` as a child process.

``run_in_processes(config, processes, stop)`` is a job like ``loop.finetune``: it writes the
config to the run folder, starts ``torchrun --standalone --nproc-per-node N -m empanada_desktop
train --from-config FILE`` and turns the run's ``metrics.jsonl`` into ``Progress`` and
``Validated`` events as rank 0 appends to it. ``stop()`` creates the run's stop file
(``EMPANADA_DESKTOP_STOP_FILE``), which every process checks before each step, so they all stop
after the same step and rank 0 saves ``last.pt``. Returns a ``FinetuneResult`` as the loop does.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from empanada_desktop.backend.events import Event, Message, Progress, StopFn, Validated, never_stop
from empanada_desktop.backend.finetune import run_folder
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import UserError

log = logging.getLogger(__name__)

STOP_FILE_ENV = "EMPANADA_DESKTOP_STOP_FILE"
EXIT_STOPPED = 130


def torchrun_command(config_file: Path, processes: int) -> list[str]:
    """The command line that trains ``config_file``'s run in ``processes`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "empanada_desktop", "train", "--from-config", str(config_file)]


def write_launch_config(config: FinetuneConfig) -> tuple[FinetuneConfig, Path]:
    """Fix the run folder now (the child writes into it) and save the config there."""
    if config.out_dir is None:
        config = config.replace(out_dir=run_folder.new_run_dir(config))
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(config.out_dir) / run_folder.LAUNCH_CONFIG
    write_text(path, yaml.safe_dump({getattr(config, "SECTION", "finetune"): config.to_dict()}, sort_keys=False))
    return config, path


def run_in_processes(config: FinetuneConfig, processes: int, stop: StopFn = never_stop,
                     poll_seconds: float = 0.5) -> Iterator[Event]:
    """Train ``config`` in ``processes`` processes (one per GPU); see the module docstring."""
    from empanada_desktop.backend.finetune.loop import FinetuneResult

    config, config_file = write_launch_config(config)
    run_dir = Path(config.out_dir)
    stop_file = run_dir / run_folder.STOP_FILE
    stop_file.unlink(missing_ok=True)
    command = torchrun_command(config_file, processes)
    log.info("starting %s", " ".join(command))
    yield Message(f"Training in {processes} processes: {' '.join(command[1:])}")
    log_path = run_dir / run_folder.PROCESSES_LOG
    with open(log_path, "w", encoding="utf-8") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                 env=dict(os.environ, **{STOP_FILE_ENV: str(stop_file)}))
        seen, durations, state = 0, [], {"baseline": {}, "metrics": {}, "best": None}
        try:
            while True:
                finished = child.poll() is not None
                if stop() and not stop_file.exists():
                    stop_file.touch()
                records = run_folder.read_metrics(run_dir)
                for record in records[seen:]:
                    yield from _events(record, config.iterations, durations, state)
                seen = len(records)
                if finished:
                    break
                time.sleep(poll_seconds)
        finally:
            if child.poll() is None:  # the job itself was abandoned: ask for a clean stop first
                stop_file.touch()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
    code = child.returncode
    best = state["best"]
    result = dict(run_dir=run_dir, model_name=config.new_name, baseline_metrics=state["baseline"],
                  final_metrics=(best or {}).get("metrics") or state["metrics"],
                  best_step=(best or {}).get("step"), best_metrics=(best or {}).get("metrics") or {})
    if code == EXIT_STOPPED:
        yield Message(f"Stopped. Resume with: empanada-desktop train --resume {run_dir}")
        return FinetuneResult(**result, steps_done=state.get("step", 0), stopped=True)
    if code != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise UserError(f"training in {processes} processes failed (exit {code}): {' | '.join(tail)} "
                        f"(full output in {log_path}).")
    pth, yaml_path = run_folder.exported_files(run_dir, config.new_name)
    return FinetuneResult(**result, exported_pth=pth, exported_yaml=yaml_path, steps_done=config.iterations)


def _events(record: dict, total: int, durations: list[float], state: dict) -> Iterator[Event]:
    step = int(record.get("step", 0))
    if "losses" in record:
        state["step"] = step
        durations.append(float(record.get("seconds", 0.0)))
        recent = durations[1:][-10:] or durations[-1:]
        seconds = sum(recent) / len(recent)
        yield Progress(step=step, total=total, losses=dict(record["losses"]), lr=float(record.get("lr", 0.0)),
                       seconds_per_step=seconds, eta_seconds=seconds * (total - step))
    elif "validation" in record:
        metrics = dict(record["validation"])
        baseline = bool(record.get("baseline"))
        if baseline:
            state["baseline"] = metrics
        state["metrics"] = metrics
        key = "pq" if "pq" in metrics else "iou"
        if not baseline and (state["best"] is None or metrics.get(key, 0.0) > state["best"]["value"]):
            state["best"] = {"step": step, "value": metrics.get(key, 0.0), "metrics": metrics}
        yield Validated(step=step, metrics=metrics, baseline=baseline)


def read_launch_config(path: str | Path) -> FinetuneConfig:
    """The config ``write_launch_config`` saved (``train --from-config``)."""
    from empanada_desktop.backend.finetune.train_config import config_class
    from empanada_desktop.core.errors import ConfigError

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path} cannot be read ({error}).") from error
    for name in ("train", "finetune"):
        if isinstance(document, dict) and isinstance(document.get(name), dict):
            return config_class(name).from_dict(document[name])
    raise ConfigError(f"{path} has no 'train' or 'finetune' section.")
