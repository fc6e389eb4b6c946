"""What keeps a batch-norm-fused encoder stable with ``--layers all``, and what the health monitor
costs (benchmark, not a test; numbers in benchmarks/README.md).

MitoNet_v1's architecture (ResNet-50, encoder batch norms fused as in the released file) with
random weights is registered in a temporary app home, and the real finetuning loop runs:

1. *Remedies*, ``--layers all`` on a synthetic training set: empanada's recipe (max_lr 0.003 on
   every group, no clipping), gradient clipping alone, lower encoder learning rates alone, and
   the defaults. The monitor watches but is told not to stop (its blow-up factor set to
   infinity here only), so each run shows how far the encoder's output scale (RMS per stage on
   a fixed probe) moves from its start over ``--iterations`` steps.
2. *Loss*: the defaults against empanada's recipe on the demo training set
   (``resources/demo/training_set``), layers ``all`` (the monitor stopping the old recipe as in
   the app, and unguarded to get its loss) and layers ``none``.
3. *Cost*: seconds the monitor spent per step (``health.seconds`` in metrics.jsonl) over the
   step's own seconds, at the app's default batch 16 and 256 px (also reported for every run above).

    .venv/bin/python benchmarks/training_health.py                       # about 15 min, 2 cores
    .venv/bin/python benchmarks/training_health.py --iterations 10 --batch-size 2 --patch-size 128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_speed import make_home, register_mitonet_architecture, write_synthetic_training_set  # noqa: E402

REMEDIES = {
    # name: (encoder_lr_scale, grad_clip); None = the defaults chosen by health.py
    "empanada recipe (lr 0.003 everywhere, no clipping)": (1.0, 0.0),
    "gradient clipping 1.0 only": (1.0, 1.0),
    "encoder lr x0.1 only": (0.1, 0.0),
    "encoder lr x0.03 only": (0.03, 0.0),
    "encoder lr x0.01 only": (0.01, 0.0),
    "defaults": (None, None),
}


LOSS_CASES = [
    # (layers, name, encoder_lr_scale, grad_clip, monitor stops a blow-up)
    ("all", "defaults", None, None, True),
    ("all", "encoder lr x0.1 + clip 1", 0.1, 1.0, False),
    ("all", "encoder lr x0.03 + clip 1", 0.03, 1.0, False),
    ("all", "empanada recipe, unguarded", 1.0, 0.0, False),
    ("none", "defaults = empanada recipe", None, None, True),
]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--skip", nargs="*", default=[], choices=("remedies", "loss", "cost"))
    parser.add_argument("--cases", nargs="*", default=[], help="run only the loss cases whose name contains one of these")
    parser.add_argument("--cost-batch-size", type=int, default=16)
    parser.add_argument("--cost-patch-size", type=int, default=256)
    parser.add_argument("--cost-iterations", type=int, default=6)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)


def run(model: str, data: Path, run_dir: Path, args, *, layers: str, scale, clip, stop_on_blow_up=True) -> dict:
    from empanada_desktop.backend.events import run_to_end
    from empanada_desktop.backend.finetune import health
    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.loop import finetune

    config = FinetuneConfig(
        model=model, train_dirs=[data], new_name=run_dir.name, layers=layers, iterations=args.iterations,
        patch_size=args.patch_size, batch_size=args.batch_size, device="cpu", out_dir=run_dir,
        checkpoint_every=0, validations=0, register=False, encoder_lr_scale=scale, grad_clip=clip,
    )
    saved_factor = health.BLOW_UP_FACTOR
    health.BLOW_UP_FACTOR = saved_factor if stop_on_blow_up else float("inf")
    started = time.perf_counter()
    try:
        _events, result = run_to_end(finetune(config))
    finally:
        health.BLOW_UP_FACTOR = saved_factor
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "losses" in r]
    checks = [r["health"] for r in records if "health" in r]
    scaled = [c["encoder_scale"] for c in checks if c.get("encoder_scale")]
    start = next((c["start_scale"] for c in checks if c.get("start_scale")), {})
    run_config = (run_dir / "config.yaml").read_text()
    growth = [max(v / start[k] for k, v in s.items()) for s in scaled] if start else []
    return {
        "layers": layers,
        "config": [line.strip() for line in run_config.splitlines() if "encoder_lr_scale" in line or "grad_clip" in line],
        "steps_done": len(steps),
        "stopped_by_monitor": bool(result.health_problem),
        "first_loss": steps[0]["losses"]["total"],
        "last_loss": steps[-1]["losses"]["total"],
        "mean_last5_loss": statistics.mean(s["losses"]["total"] for s in steps[-5:]),
        "max_scale_growth": max(growth) if growth else None,
        "final_scale_growth": growth[-1] if growth else None,
        "stage4_start_end": (start.get("stage4"), scaled[-1].get("stage4")) if scaled else None,
        "seconds_per_step": statistics.median(s["seconds"] for s in steps),
        "monitor_seconds_per_step": statistics.mean(c["seconds"] for c in checks) if checks else None,
        "wall_seconds": time.perf_counter() - started,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    home = make_home()
    import torch

    from empanada_desktop.core.resources import demo_dir

    torch.manual_seed(0)
    model = register_mitonet_architecture()
    synthetic = write_synthetic_training_set(home / "synthetic", 16, args.patch_size)
    results: dict = {"settings": vars(args) | {"out": str(args.out)}, "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "remedies": {}, "loss": {}}
    if "remedies" not in args.skip:
        for index, (name, (scale, clip)) in enumerate(REMEDIES.items()):
            row = run(model, synthetic, home / f"remedy{index}", args, layers="all", scale=scale, clip=clip,
                      stop_on_blow_up=False)
            results["remedies"][name] = row
            print(json.dumps({name: row}), flush=True)
    if "loss" not in args.skip:
        demo = demo_dir() / "training_set"
        # With layers "none" the defaults are empanada's recipe (health.resolve_safe_defaults), so
        # one run stands for both.
        cases = [case for case in LOSS_CASES if not args.cases or any(part in case[1] for part in args.cases)]
        for index, (layers, name, scale, clip, guard) in enumerate(cases):
            row = run(model, demo, home / f"demo{index}", args, layers=layers, scale=scale, clip=clip,
                      stop_on_blow_up=guard)
            results["loss"][f"{layers}: {name}"] = row
            print(json.dumps({f"{layers}: {name}": row}), flush=True)
    if "cost" not in args.skip:
        # The app's default batch and patch size: the monitor's share of a step as users see it.
        cost_args = argparse.Namespace(**vars(args) | {"batch_size": args.cost_batch_size, "iterations":
                                                          args.cost_iterations, "patch_size": args.cost_patch_size})
        data = write_synthetic_training_set(home / "synthetic_cost", 16, args.cost_patch_size)
        for layers in ("all", "none"):
            row = run(model, data, home / f"cost_{layers}", cost_args, layers=layers, scale=None, clip=None)
            row["monitor_share_of_step"] = row["monitor_seconds_per_step"] / row["seconds_per_step"]
            results.setdefault("cost", {})[layers] = row
            print(json.dumps({f"cost {layers}": row}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
