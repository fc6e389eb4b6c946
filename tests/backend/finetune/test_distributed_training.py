"""torchrun: 2 Gloo processes on the CPU follow the 1-process run; rank 0 alone writes; a run
resumes with another number of processes.

Tolerance. Both runs start from the same weights (seeded, then broadcast from rank 0) and see the
same global batch at every step (batches depend only on seed and step); batch norm is synchronised,
so its statistics are those of the global batch, and gradients are averaged. So the first steps,
while OneCycleLR's learning rate is still low (max_lr / 25), must agree closely: the test allows
0.1% at steps 1 and 2 (measured 0.0004% and 0.005%). Per-process batch norm would already change
step 1, since each process would normalise with the statistics of 2 patches instead of 4. What
still differs per process, and grows as the learning rate rises: the ASPP dropout masks and
PointRend's random points (each process draws for its own 2 images), the top-20% bootstrap
cross-entropy and the offset L1 normalisation (taken over 2 images instead of 4). Measured on this
test's data: up to 23% on one later step, 7% on the mean of the 5 steps. The test allows 50% on
any step and 15% on the mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from finetune_fixtures import write_training_set

pytestmark = pytest.mark.slow


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "losses" in r]
    assert len(steps) == len(set(steps)), "a step was logged twice (only rank 0 may write)"
    return {r["step"]: r["losses"]["total"] for r in records if "losses" in r}


def _run(args, nproc, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore::FutureWarning")
    launcher = [sys.executable, "-m", "empanada_desktop"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
         "-m", "empanada_desktop"]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=540, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_gloo_processes_follow_one_process_and_resume_with_another_count(tmp_path):
    train = write_training_set(tmp_path / "train", {"a": 6, "b": 4}, seed=5)
    common = ["train", "--encoder", "resnet18", "--train", str(train), "--iterations", "5", "--patch-size", "64",
              "--batch-size", "4", "--device", "cpu", "--precision", "fp32", "--no-register", "--name", "ddp"]
    _run([*common, "--out", str(tmp_path / "one"), "--checkpoint-every", "0"], 1, tmp_path)
    two = _run([*common, "--out", str(tmp_path / "two"), "--checkpoint-every", "0"], 2, tmp_path)
    one_losses, two_losses = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(two_losses) == [1, 2, 3, 4, 5]
    relative = {step: abs(two_losses[step] - one_losses[step]) / one_losses[step] for step in one_losses}
    assert relative[1] < 1e-3 and relative[2] < 1e-3, relative
    assert max(relative.values()) < 0.5, relative
    mean_one, mean_two = (sum(losses.values()) / 5 for losses in (one_losses, two_losses))
    assert abs(mean_two - mean_one) / mean_one < 0.15, (one_losses, two_losses)
    # rank 0 alone wrote: one run folder, one exported pair, one "new model" report
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        ["checkpoints", "config.yaml", "ddp.pth", "ddp.yaml", "finetune.log", "metrics.jsonl"]
    assert two.stdout.count("new model: ddp") == 1

    # Stopped after step 3 in one process, resumed by two: steps 4 and 5 follow the 1-process run.
    from empanada_desktop.cli import build_parser
    from empanada_desktop.cli.train import run_train

    steps = iter(range(100))
    args = build_parser().parse_args([*common, "--out", str(tmp_path / "three"), "--checkpoint-every", "0"])
    assert run_train(args, stop=lambda: next(steps) >= 3) == 130
    _run(["train", "--resume", str(tmp_path / "three"), "--device", "cpu"], 2, tmp_path)
    resumed = _losses(tmp_path / "three")
    assert sorted(resumed) == [1, 2, 3, 4, 5]
    for step in (4, 5):
        assert abs(resumed[step] - one_losses[step]) / one_losses[step] < 0.5, (resumed, one_losses)
