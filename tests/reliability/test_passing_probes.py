"""Probes that passed in the matrix and must keep passing: files that would run code when
unpickled are refused without running it (checkpoints, --resume, model import)."""

from __future__ import annotations

import os

import torch

from empanada_desktop.cli import main


class _Exploit:
    """Unpickling this runs ``os.system``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _exploit_checkpoint(path, marker):
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "step": 1, "config": {},
                "rng": {}, "version": 1, "extra": _Exploit(marker)}, path)


def test_a_checkpoint_that_would_run_code_is_refused(tiny, tmp_path, capsys):
    from finetune_fixtures import write_training_set

    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.run_folder import write_config

    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    train = write_training_set(tmp_path / "train", {"cells": 2}, seed=1)
    write_config(run, FinetuneConfig(model=tiny, train_dirs=[train], new_name="x", out_dir=run, batch_size=2,
                                     patch_size=64, device="cpu"), {})
    _exploit_checkpoint(run / "checkpoints" / "last.pt", marker)
    assert main(["finetune", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "Traceback" not in err
    assert not marker.exists()


def test_a_model_file_that_would_run_code_is_refused_at_import(tmp_path, capsys):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    _exploit_checkpoint(weights, marker)
    assert main(["models", "import", str(weights), "--name", "evil", "--like", "MitoNet_v1"]) == 2
    err = capsys.readouterr().err
    assert "evil.pth" in err and ("not a TorchScript model" in err or "plain PyTorch checkpoint" in err)
    assert not marker.exists()
    assert main(["models", "info", "evil"]) == 2
