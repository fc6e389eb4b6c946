"""The app's multi-process launcher: torchrun as a child, followed through metrics.jsonl, stopped by file.

torchrun itself is replaced by the 1-process CLI here (the 2-process path is
test_distributed_training.py); what is tested is the launcher's command, events, stop and result.
"""

from __future__ import annotations

import sys

import pytest

from empanada_desktop.backend.events import Progress, Validated
from empanada_desktop.backend.finetune import launch
from empanada_desktop.backend.finetune.train_config import TrainConfig
from empanada_desktop.backend.events import run_to_end as drain

from finetune_fixtures import write_training_set


@pytest.fixture
def one_process_torchrun(monkeypatch):
    def command(config_file, processes):
        assert processes == 2
        return [sys.executable, "-m", "empanada_desktop", "train", "--from-config", str(config_file)]

    monkeypatch.setattr(launch, "torchrun_command", command)


def _config(tmp_path, **changes):
    values = dict(train_dirs=[write_training_set(tmp_path / "train", {"a": 4}, seed=2)],
                  val_dir=write_training_set(tmp_path / "val", {"v": 1}, seed=3), new_name="Launched",
                  encoder="resnet18", iterations=3, patch_size=64, batch_size=2, device="cpu", precision="fp32",
                  validations=1, register=False, out_dir=tmp_path / "run")
    values.update(changes)
    return TrainConfig(**values)


def test_torchrun_command_runs_the_train_command_from_a_config_file(tmp_path):
    command = launch.torchrun_command(tmp_path / "launch.yaml", 4)
    assert command[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
                           "-m", "empanada_desktop", "train", "--from-config", str(tmp_path / "launch.yaml")]
    config, path = launch.write_launch_config(_config(tmp_path))
    assert launch.read_launch_config(path) == config


def test_launcher_turns_metrics_into_events_and_returns_the_export(tmp_path, one_process_torchrun):
    events, result = drain(launch.run_in_processes(_config(tmp_path), 2, poll_seconds=0.1))
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]
    validated = [e for e in events if isinstance(e, Validated)]
    assert validated[0].baseline and validated[-1].step == 3
    assert not result.stopped and result.exported_pth.is_file() and result.exported_yaml.is_file()
    assert result.baseline_metrics and result.final_metrics and result.best_step == 3


def test_launcher_stop_saves_a_checkpoint_in_the_child(tmp_path, one_process_torchrun):
    progress = []
    events, result = drain(launch.run_in_processes(_config(tmp_path, iterations=50, val_dir=None), 2,
                                                   stop=lambda: bool(progress), poll_seconds=0.1),
                           on_event=lambda e: progress.append(e) if isinstance(e, Progress) else None)
    assert result.stopped and 1 <= result.steps_done < 50
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "run" / "Launched.pth").exists()
