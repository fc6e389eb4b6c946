"""run_folder: the layout, config.yaml round trip, resuming, resumable runs (no torch needed)."""

from __future__ import annotations

import os

import pytest
import yaml

from empanada_desktop.backend.finetune import run_folder
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.paths import runs_dir


def _config(tmp_path, name="lab", **changes):
    return FinetuneConfig(model="MitoNet_v1", train_dirs=(tmp_path / "train",), new_name=name, **changes)


def _started(config, found=None):
    run_dir = run_folder.new_run_dir(config)
    run_folder.write_config(run_dir, config, found or {"device": "cpu"})
    run_folder.last_checkpoint(run_dir).write_bytes(b"checkpoint")
    return run_dir


def test_config_yaml_round_trip_and_resume_config(tmp_path):
    config = _config(tmp_path, iterations=7, out_dir=tmp_path / "run", device="cuda")
    run_dir = _started(config, {"training_images": 3})
    document = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert document["finetune"]["iterations"] == 7 and document["run"] == {"training_images": 3}
    assert run_folder.read_config(run_dir) == config

    resumed = run_folder.resume_config(run_dir, device="cpu")
    assert resumed.resume == run_dir and resumed.out_dir == run_dir and resumed.device == "cpu"
    assert run_folder.resume_config(run_dir).device == "cuda"
    with pytest.raises(ConfigError, match="already holds a run"):
        run_folder.new_run_dir(config)


def test_read_config_names_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="not a finetuning run folder"):
        run_folder.read_config(tmp_path)
    (tmp_path / "config.yaml").write_text("run: {}\n")
    with pytest.raises(ConfigError, match="no 'finetune' section"):
        run_folder.read_config(tmp_path)


def test_find_resumable_runs_newest_first_without_finished_ones(tmp_path):
    older = _started(_config(tmp_path, "older", iterations=5))
    newer = _started(_config(tmp_path, "newer"))
    finished = _started(_config(tmp_path, "done"))
    run_folder.exported_files(finished, "done")[0].write_bytes(b"model")
    os.utime(run_folder.last_checkpoint(older), (1_000_000_000, 1_000_000_000))
    (runs_dir() / "not_a_run").mkdir()

    runs = run_folder.find_resumable_runs()
    assert [run.run_dir for run in runs] == [newer, older]
    assert runs[1] == run_folder.read_run(older)
    assert runs[1].model == "MitoNet_v1" and runs[1].iterations == 5
    assert runs[1].checkpoint == older / "checkpoints" / "last.pt"
    assert runs[1].label.startswith("older (from MitoNet_v1, 5 iterations), last saved 20")
    assert run_folder.read_run(finished) is None
    assert run_folder.find_resumable_runs(tmp_path / "missing") == []


def test_metrics_are_appended_read_and_truncated(tmp_path):
    for step in (1, 2, 3):
        run_folder.append_metrics(tmp_path, {"step": step})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4')  # torn last line
    assert [r["step"] for r in run_folder.read_metrics(tmp_path)] == [1, 2, 3]
    run_folder.truncate_metrics(tmp_path, 2)
    assert [r["step"] for r in run_folder.read_metrics(tmp_path)] == [1, 2]
