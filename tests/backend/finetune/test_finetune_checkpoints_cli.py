"""Checkpoints survive failed and killed writes; the CLI runs, stops with a resume hint, resumes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from empanada_desktop.backend.finetune import checkpoints
from empanada_desktop.backend.finetune.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from empanada_desktop.cli import main
from empanada_desktop.core.errors import UserError


def _checkpoint(step: int) -> dict:
    return {"model": {"w": torch.full((3,), float(step))}, "optimizer": {}, "scheduler": {}, "scaler": {},
            "step": step, "config": {"new_name": "x"}, "rng": checkpoints.rng_state(), "version": 1}


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, _checkpoint(1))
    real_save = torch.save

    def disk_full(obj, target, *args, **kwargs):
        with open(target, "wb") as handle:
            handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", disk_full)
    with pytest.raises(UserError, match="disk is full.*previous checkpoint is unchanged"):
        save_checkpoint(path, _checkpoint(2))
    monkeypatch.setattr(checkpoints.torch, "save", real_save)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]


def test_process_killed_mid_write_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from empanada_desktop.backend.finetune import checkpoints
        ck = lambda step: {{"model": {{"w": torch.zeros(1000)}}, "optimizer": {{}}, "scheduler": {{}},
                           "scaler": {{}}, "step": step, "config": {{}}, "rng": {{}}, "version": 1}}
        checkpoints.save_checkpoint({str(path)!r}, ck(1))
        def killed_while_writing(obj, target, *a, **k):
            with open(target, "wb") as handle:
                handle.write(b"PK\\x03\\x04 partial")
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        checkpoints.torch.save = killed_while_writing
        checkpoints.save_checkpoint({str(path)!r}, ck(2))
        """
    )
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert process.returncode == -9, process.stderr
    assert len(list(tmp_path.glob(".*.tmp"))) == 1  # the unfinished write is left behind ...
    assert load_checkpoint(path)["step"] == 1  # ... but the checkpoint is the previous one
    save_checkpoint(path, _checkpoint(3))
    assert not list(tmp_path.glob(".*.tmp")) and load_checkpoint(path)["step"] == 3


def test_truncated_or_foreign_checkpoints_are_refused_clearly(tmp_path):
    truncated = tmp_path / "last.pt"
    save_checkpoint(truncated, _checkpoint(1))
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an empanada-desktop"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def _cli_args(model, train_dir, run_dir, *extra):
    return ["finetune", "--model", model, "--train", str(train_dir), "--iterations", "2", "--patch-size", "64",
            "--batch-size", "2", "--device", "cpu", "--name", "cli_ft", "--out", str(run_dir), *extra]


def test_cli_finetunes_with_progress_and_registers(tiny_model, train_dir, tmp_path, capsys):
    from empanada_desktop.core.registry import ModelRegistry

    assert main(_cli_args(tiny_model, train_dir, tmp_path / "run")) == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err and "ETA" in captured.err
    assert "finetuned model: cli_ft" in captured.out
    assert ModelRegistry().get("cli_ft").installed


def test_cli_reports_user_errors_without_traceback(tiny_model, train_dir, tmp_path, capsys):
    assert main(_cli_args(tiny_model, train_dir, tmp_path / "run", "--batch-size", "16")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "batch size 16" in err and "Traceback" not in err
    assert main(["finetune", "--train", str(train_dir)]) == 2
    assert "--model" in capsys.readouterr().err


def test_cli_stop_saves_checkpoint_and_resume_finishes(tiny_model, train_dir, tmp_path, capsys):
    from empanada_desktop.cli import build_parser
    from empanada_desktop.cli.finetune import EXIT_STOPPED, run_finetune

    run_dir = tmp_path / "run"
    args = build_parser().parse_args(_cli_args(tiny_model, train_dir, run_dir, "--no-register"))
    calls = []
    assert run_finetune(args, stop=lambda: calls.append(1) or len(calls) > 1) == EXIT_STOPPED
    err = capsys.readouterr().err
    assert f"--resume {run_dir}" in err
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 1
    assert main(["finetune", "--resume", str(run_dir), "--device", "cpu"]) == 0
    assert (run_dir / "cli_ft.pth").is_file()


def test_sigint_handler_asks_the_loop_to_stop(monkeypatch):
    from empanada_desktop.cli.finetune import _StopOnInterrupt

    with _StopOnInterrupt() as stop:
        assert not stop()
        os.kill(os.getpid(), 2)  # SIGINT: first one only requests a stop
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), 2)
