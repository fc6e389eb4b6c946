"""Probes 2, 4, 6, 7, 9, 10 and the disk-space check: a run never overwrites the user's files,
survives a failed checkpoint write, reports a full disk at export and stays resumable, refuses a
bad or taken name before training, and says what is left to do when resumed at the wrong time."""

from __future__ import annotations

import shlex

import pytest
from finetune_fixtures import write_training_set
from reliability_helpers import leftovers

from empanada_desktop.backend.events import CheckpointSaved, Message, Progress, run_to_end
from empanada_desktop.backend.finetune.checkpoints import load_checkpoint
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import finetune
from empanada_desktop.cli import main
from empanada_desktop.core.errors import DiskError
from empanada_desktop.core.paths import runs_dir



@pytest.fixture
def train_dir(tmp_path):
    return write_training_set(tmp_path / "train", {"cells": 2}, seed=1)


def _args(tiny, train_dir, *extra):
    return ["finetune", "--model", tiny, "--train", str(train_dir), "--iterations", "2", "--patch-size", "64",
            "--batch-size", "2", "--device", "cpu", *extra]


def _config(tiny, train_dir, **changes):
    values = dict(model=tiny, train_dirs=[train_dir], new_name="tiny_ft", iterations=2, patch_size=64,
                  batch_size=2, device="cpu", checkpoint_every=1, register=False)
    values.update(changes)
    return FinetuneConfig(**values)


def test_out_into_a_folder_of_other_files_is_refused_naming_them(tiny, train_dir, tmp_path, capsys):
    folder = tmp_path / "my_analysis"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: settings\n")
    (folder / "metrics.jsonl").write_text('{"mine": 1}\n')
    (folder / "finetune.log").write_text("my log\n")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(_args(tiny, train_dir, "--name", "ft", "--out", str(folder))) == 2
    err = capsys.readouterr().err
    assert "not a finetuning run" in err and "config.yaml" in err and "metrics.jsonl" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("name", ["a" * 65, "a" * 80, "ends_with_dot.", "has space", "CON"])
def test_a_bad_name_is_refused_before_anything_runs(tiny, train_dir, capsys, name):
    assert main(_args(tiny, train_dir, "--name", name)) == 2
    err = capsys.readouterr().err
    assert "cannot be a model name" in err and "1-64 letters" in err and "Traceback" not in err
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_a_taken_name_is_refused_at_the_start_in_any_case(tiny, train_dir, capsys):
    assert main(_args(tiny, train_dir, "--name", "TINY")) == 2
    assert "already registered" in capsys.readouterr().err
    assert not runs_dir().exists() or not any(runs_dir().iterdir())


def test_the_same_rule_for_the_exporter_and_the_registry():
    from empanada_desktop.core.errors import UserError
    from empanada_desktop.core.registry import ModelRegistry

    with pytest.raises(UserError, match="at most 64"):
        ModelRegistry()._check_new_name("a" * 65)
    with pytest.raises(UserError, match="ends with"):
        FinetuneConfig(model="m", train_dirs=["t"], new_name="x.")


def test_resuming_a_finished_run_says_what_is_left(tiny, train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(_args(tiny, train_dir, "--name", "done_model", "--out", str(run))) == 0
    capsys.readouterr()
    assert main(["finetune", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "has finished" in err and "registered as done_model" in err and "models export done_model" in err
    assert "meanwhile" not in err
    assert main(["models", "remove", "done_model"]) == 0
    assert main(["finetune", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "not registered" in err and f"models import {run / 'done_model.pth'}" in err


def test_resume_without_a_checkpoint_gives_the_command_that_starts_again(tiny, train_dir, tmp_path, capsys):
    run = tmp_path / "run"
    events = finetune(_config(tiny, train_dir, out_dir=run, checkpoint_every=0))
    while not isinstance(next(events), Progress):
        pass
    events.close()  # killed after its first step, before any checkpoint
    assert not (run / "checkpoints" / "last.pt").exists()
    assert main(["finetune", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint yet" in err and f"--out {run}" in err
    command = shlex.split(err[err.index("empanada-desktop finetune"):].strip())
    assert main(command[1:]) == 0  # that command is allowed, in the same folder
    steps = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"losses"' in line]
    assert len(steps) == 2  # the first attempt's records were dropped, not appended to
    assert (run / "tiny_ft.pth").is_file()


def test_a_failed_checkpoint_write_does_not_end_the_run(tiny, train_dir, small_disk):
    disk = small_disk(600)
    run = disk.path / "run"
    config = _config(tiny, train_dir, out_dir=run, iterations=3)

    def on_event(event):
        if isinstance(event, CheckpointSaved) and event.step == 1:
            disk.fill()
        elif isinstance(event, Message) and event.level == "warning":
            disk.free_up()

    events, result = run_to_end(finetune(config), on_event)
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert len(warnings) == 1
    assert "step 2" in warnings[0] and "last.pt" in warnings[0] and "Training goes on" in warnings[0]
    saved = [e.step for e in events if isinstance(e, CheckpointSaved)]
    assert saved == [1, 3]
    assert not result.stopped and result.steps_done == 3 and result.exported_pth.is_file()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert leftovers(disk.path) == []


def test_a_full_disk_at_export_is_an_error_and_the_run_stays_resumable(tiny, train_dir, small_disk):
    disk = small_disk(600)
    run = disk.path / "run"
    config = _config(tiny, train_dir, out_dir=run, iterations=2)

    def on_event(event):
        if isinstance(event, CheckpointSaved) and event.step == 2:
            disk.fill()

    with pytest.raises(DiskError) as raised:
        run_to_end(finetune(config), on_event)
    message = str(raised.value)
    assert "could not save the finetuned model" in message
    assert "disk is full" in message or "not enough free disk space" in message
    assert f"finetune --resume {run}" in message
    assert not (run / "tiny_ft.pth").exists() and leftovers(disk.path) == []
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2

    disk.free_up()
    resume = FinetuneConfig(model="x", train_dirs=["x"], new_name="x", resume=run, device="cpu")
    _, result = run_to_end(finetune(resume), lambda event: None)
    assert result.exported_pth == run / "tiny_ft.pth" and result.exported_pth.is_file()


def test_exporting_onto_a_full_disk_does_not_abort_the_process(tiny, tmp_path, small_disk):
    """torch.jit.save onto a full disk terminates the process (exit 134); ours must raise."""
    disk = small_disk(16)
    if not disk.real:
        pytest.skip("needs a real small disk (mount not permitted here)")
    import subprocess
    import sys

    from reliability_helpers import REPO

    disk.fill()
    script = (
        "import sys\n"
        "from empanada_desktop.backend.loading import load_registered\n"
        "from empanada_desktop.backend.torchscript import export_empanada\n"
        "from empanada_desktop.core.errors import UserError\n"
        "model, config = load_registered('tiny')\n"
        "try:\n"
        f"    export_empanada(model, config, {str(disk.path)!r}, 'out')\n"
        "except UserError as error:\n"
        "    print(error); sys.exit(2)\n"
    )
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "disk" in result.stdout and str(disk.path) in result.stdout
    disk.free_up()
    assert leftovers(disk.path) == [] and not (disk.path / "out.pth").exists()


def test_not_enough_space_is_found_before_the_run_starts(tiny, train_dir, small_disk, capsys):
    disk = small_disk(32)
    if not disk.real:
        disk.fill()
    run = disk.path / "run"
    assert main(_args(tiny, train_dir, "--name", "ft", "--out", str(run))) == 2
    err = capsys.readouterr().err
    assert "not enough free disk space" in err and "free" in err and "more" in err and str(disk.path) in err
    assert not run.exists()


def test_out_on_a_read_only_disk(tiny, train_dir, read_only_disk, capsys):
    assert main(_args(tiny, train_dir, "--name", "ft", "--out", str(read_only_disk.path / "run"))) == 2
    err = capsys.readouterr().err
    assert ("read-only" if read_only_disk.real else "cannot write") in err and "Traceback" not in err
    assert str(read_only_disk.path) in err
