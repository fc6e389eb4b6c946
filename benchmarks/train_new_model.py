"""Train a new model from random weights on the synthetic demo data; IoU on held-out images; speed
with 1 and 2 processes.

    python benchmarks/train_new_model.py [--iterations 200] [--speed-iterations 6] [--skip-quality]

Quality: ``empanada-desktop train --encoder resnet18 --init random`` on
``resources/demo/training_set`` (16 patches of 128 px, two synthetic acquisitions), validated on
held-out images: 4 slices of a third synthetic stack rendered by ``resources/demo/make_demo.py``'s
``render_volume`` with a seed the training set never saw. Prints the validation IoU / PQ / F1
at each of the run's validations (4, evenly spaced).

Speed: the same training, a few iterations, in 1 process and under ``torchrun
--nproc-per-node 2`` (Gloo, same global batch); seconds per iteration are the median of the
steps after the first. Runs in a temporary app home; nothing is registered.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "resources" / "demo"))


def held_out(folder: Path, seed: int = 4242) -> Path:
    from make_demo import relabel_sequential, render_volume

    from empanada_desktop.core.dataset import write_pair

    image, labels = render_volume(seed=seed, count=14, contrast=0.9, brightness=6.0)
    for z in (1, 3, 5, 7):
        write_pair(folder, "held_out", f"slice_{z}", image[z], relabel_sequential(labels[z]))
    return folder


def run(args: list[str], nproc: int, env: dict) -> None:
    launcher = [sys.executable, "-m", "empanada_desktop"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
        "-m", "empanada_desktop"]
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--speed-iterations", type=int, default=6)
    parser.add_argument("--skip-quality", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="train-bench-") as folder:
        work = Path(folder)
        env = dict(os.environ, EMPANADA_DESKTOP_HOME=str(work / "home"), PYTHONPATH=str(ROOT),
                   PYTHONWARNINGS="ignore::FutureWarning")
        val = held_out(work / "held_out")
        common = ["train", "--architecture", "PanopticDeepLabPR", "--encoder", "resnet18", "--init", "random",
                  "--train", str(ROOT / "resources" / "demo" / "training_set"), "--patch-size", str(options.patch_size),
                  "--batch-size", str(options.batch_size), "--device", "cpu", "--no-register", "--name", "bench"]
        if not options.skip_quality:
            run([*common, "--val", str(val), "--iterations", str(options.iterations), "--out", str(work / "quality")],
                1, env)
            for record in records(work / "quality"):
                if "validation" in record:
                    metrics = {k: round(v, 3) for k, v in record["validation"].items() if k in ("iou", "pq", "f1")}
                    print(f"step {record['step']:>5}: held-out {metrics}")
            losses = [r["losses"]["total"] for r in records(work / "quality") if "losses" in r]
            print(f"loss: first 5 steps {statistics.mean(losses[:5]):.3f}, last 5 {statistics.mean(losses[-5:]):.3f}")
        for nproc in (1, 2):
            out = work / f"speed{nproc}"
            run([*common, "--iterations", str(options.speed_iterations), "--out", str(out), "--checkpoint-every", "0"],
                nproc, dict(env, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // nproc))))
            seconds = [r["seconds"] for r in records(out) if "seconds" in r][1:]
            print(f"{nproc} process(es): {statistics.median(seconds):.2f} s per iteration "
                  f"(global batch {options.batch_size}, {options.patch_size} px; median of {len(seconds)} steps)")


if __name__ == "__main__":
    main()
