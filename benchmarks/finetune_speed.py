"""Seconds per finetuning iteration for the MitoNet_v1 architecture (benchmark, not a test).

MitoNet_v1's architecture (PanopticDeepLab + PointRend, ResNet50, batch-norm-fused encoder like
the released file) with random weights is scripted and registered in a temporary app home, a
synthetic training set in empanada's layout is written, and the real finetuning loop runs
``--warmup + --iterations`` steps for each ``--layers`` choice on each device. The seconds of the
timed steps come from the run's own ``metrics.jsonl`` (data loading included, as users see it).

    .venv/bin/python benchmarks/finetune_speed.py                     # CPU (and CUDA if present)
    .venv/bin/python benchmarks/finetune_speed.py --iterations 1 --layers none --devices cpu
    .venv/bin/python benchmarks/finetune_speed.py --precision fp32    # compare precisions

Reference (docs/EMPANADA_FORMATS.md section 8): empanada-napari 1.2.4 on the team's 2-core CPU takes
12.5 s ("none") and 19.7 s ("all") per iteration at batch 16, 256 px.

``--empanada-python PYTHON`` also runs empanada-napari 1.2.4's own finetuning loop
(``benchmarks/reference/empanada_reference.py``, in its own virtual environment; see
benchmarks/README.md) on the same TorchScript file and the same training set, and reports the
ratio of the two.

The CPU's capability line (``benchmarks/cpu_bound.py``) comes first; the summary at the end gives
each speed also as achieved GFLOP/s and as a fraction of this machine's measured bound in the
precision the run used (``--bound bound.json`` reuses a ``cpu_bound.py --json`` file, otherwise
it is measured first, about 20 s). A step's FLOPs are counted with ``FlopCounterMode`` on one real
training step (forward + the backward the frozen layers leave), not estimated as 3x the forward.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

EMPANADA_REFERENCE_SECONDS = {"none": 12.5, "all": 19.7}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per setting (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first (default 1)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--layers", nargs="+", default=["none", "all"])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--frozen-int8", default="auto", choices=("auto", "on", "off"),
                        help="frozen encoder layers in int8 (the app's default: auto = on a CPU in fp32)")
    parser.add_argument("--images", type=int, default=32, help="synthetic training images (default 32)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--empanada-python", type=Path, metavar="PYTHON",
                        help="python of a venv with empanada-napari 1.2.4, for the side-by-side run")
    parser.add_argument("--bound", type=Path, metavar="JSON",
                        help="the CPU bound from `cpu_bound.py --json` (default: measure it first)")
    return parser.parse_args(argv)


def make_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    os.environ["EMPANADA_DESKTOP_HOME"] = str(home / "home")
    os.environ["EMPANADA_DESKTOP_EMPANADA_DIR"] = str(home / "empanada")
    return home


def register_mitonet_architecture(name: str = "bench_MitoNet_v1") -> str:
    """Random-weight MitoNet_v1 architecture, fused encoder, scripted and registered."""
    import torch

    from empanada_desktop.backend.loading import create_builtin_weights
    from empanada_desktop.core.registry import ModelRegistry

    model = create_builtin_weights("MitoNet_v1", seed=0, fused_encoder=True).eval()
    registry = ModelRegistry()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.pth"
        torch.jit.script(model).save(str(path))
        registry.register(name, registry.get("MitoNet_v1").config, path, copy=True)
    return name


def write_synthetic_training_set(root: Path, images: int, size: int) -> Path:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for index in range(images):
        source = f"source_{index % 4}"
        for kind in ("images", "masks"):
            (root / source / kind).mkdir(parents=True, exist_ok=True)
        image = rng.normal(90, 20, (size, size))
        mask = np.zeros((size, size), np.int32)
        for label in range(1, 9):
            cy, cx = rng.integers(16, size - 16, 2)
            ry, rx = rng.integers(6, 24, 2)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            mask[inside] = label
            image[inside] += 60
        name = f"patch_{index:04d}.tiff"
        tifffile.imwrite(root / source / "images" / name, np.clip(image, 0, 255).astype(np.uint8))
        tifffile.imwrite(root / source / "masks" / name, mask)
    return root


def time_setting(model: str, data: Path, run_dir: Path, layers: str, device: str, args) -> dict:
    from empanada_desktop.backend.events import Message
    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.loop import finetune

    total = args.warmup + args.iterations
    config = FinetuneConfig(
        model=model, train_dirs=[data], new_name=f"bench_{layers}", layers=layers, iterations=total,
        patch_size=args.patch_size, batch_size=args.batch_size, device=device, out_dir=run_dir,
        precision=args.precision, checkpoint_every=0, validations=0, register=False, frozen_int8=args.frozen_int8,
    )
    notes = []
    started = time.perf_counter()
    generator = finetune(config)
    while True:
        try:
            event = next(generator)
        except StopIteration:
            break
        if isinstance(event, Message):
            notes.append(event.text)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "seconds" in r]
    timed = [r["seconds"] for r in steps[args.warmup:]] or [steps[-1]["seconds"]]
    return {
        "layers": layers,
        "device": device,
        "seconds_per_iteration": statistics.median(timed),
        "timed_iterations": len(timed),
        "first_loss": steps[0]["losses"]["total"],
        "last_loss": steps[-1]["losses"]["total"],
        "wall_seconds_incl_setup_and_export": wall,
        "notes": notes,
    }


def step_flops(layers: str, batch_size: int, patch_size: int) -> dict:
    """Matrix and convolution FLOPs of one training step of the benchmark's model at ``layers``:
    forward + the backward its frozen stages leave, counted on the "meta" device (no compute)."""
    import torch

    from empanada_desktop.backend.flops import count_flops
    from empanada_desktop.backend.loading import create_builtin_weights
    from empanada_desktop.backend.models.stages import freeze_batchnorm_eval, set_finetunable

    model = create_builtin_weights("MitoNet_v1", seed=0, fused_encoder=True)
    set_finetunable(model, layers)
    model.train()
    freeze_batchnorm_eval(model)
    model = model.to("meta")
    x = torch.empty(batch_size, 1, patch_size, patch_size, device="meta")

    def forward():
        with torch.no_grad():
            model(x)

    def step():
        out = model(x)
        sum(v.float().mean() for v in out.values() if v.is_floating_point() and v.requires_grad).backward()

    return {"forward": count_flops(forward), "step": count_flops(step)}


def summary(results: list[dict], bound: dict | None) -> None:
    """Each speed as s/iteration, its ratio to empanada-napari, and a fraction of the CPU bound."""
    from cpu_bound import fraction_text

    print("summary (GFLOP/s from FlopCounterMode's count of one step; bound from cpu_bound.py):")
    for result in results:
        flops = result["flops"]
        ours = result["seconds_per_iteration"]
        line = (f"  {result['device']:>4} layers={result['layers']:<6} ours {ours:.2f} s/iteration, "
                f"{flops['step'] / 1e9:.0f} GFLOP/step ({flops['step'] / flops['forward']:.2f}x the forward)")
        if bound is not None and result["device"] == "cpu":
            line += f", {fraction_text(flops['step'], ours, result['precision'], bound)}"
            result["bound_gflops"] = (bound["gflops"].get(result["precision"]) or bound["gflops"]["fp32"])["bound"]
        if "empanada" in result:
            theirs = result["empanada"]["steady_seconds_per_step"]
            line += f"; empanada-napari {theirs:.2f} s (ours {theirs / ours:.2f}x)"
            if bound is not None:  # its torch.cuda.amp autocast does nothing on the CPU: fp32
                line += f", {fraction_text(flops['step'], theirs, 'fp32', bound)}"
        print(line, flush=True)


def time_empanada(python: Path, model: str, data: Path, layers: str, args) -> dict:
    """empanada's own loop on the registered model's .pth/.yaml pair, in its own venv."""
    import subprocess

    from empanada_desktop.core.registry import ModelRegistry

    weights = ModelRegistry().get(model).weights_path
    script = Path(__file__).resolve().parent / "reference" / "empanada_reference.py"
    # empanada runs epochs of len(images) // batch steps; ask for enough to time past warm-up.
    command = [
        str(python), str(script), "finetune", "--config", str(weights.with_suffix(".yaml")),
        "--train", str(data), "--layers", layers, "--iterations", str(args.warmup + args.iterations),
        "--patch-size", str(args.patch_size), "--batch-size", str(args.batch_size), "--device", "cpu",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPANADA_DESKTOP")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"empanada reference run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    args = parse_args(argv)
    home = make_home()
    import torch

    from cpu_bound import load_or_measure

    from empanada_desktop.backend.cpu import cpu_capability_info
    from empanada_desktop.backend.finetune.precision import choose_precision

    print(cpu_capability_info().line(), flush=True)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    bound = load_or_measure(args.bound) if "cpu" in devices else None
    model = register_mitonet_architecture()
    data = write_synthetic_training_set(home / "data", args.images, max(args.patch_size, 256) + 64)
    results = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch_size}, "
          f"{args.patch_size} px, {args.warmup} warm-up + {args.iterations} timed iterations")
    for device in devices:
        for layers in args.layers:
            result = time_setting(model, data, home / f"run-{device}-{layers}", layers, device, args)
            result["precision"] = choose_precision(torch.device(device), args.precision).name
            result["flops"] = step_flops(layers, args.batch_size, args.patch_size)
            results.append(result)
            reference = EMPANADA_REFERENCE_SECONDS.get(layers) if device == "cpu" else None
            ratio = f", {reference / result['seconds_per_iteration']:.1f}x empanada's {reference} s" if reference else ""
            print(f"{device:>5} layers={layers:<6} {result['seconds_per_iteration']:.2f} s/iteration{ratio} "
                  f"(loss {result['first_loss']:.3f} -> {result['last_loss']:.3f}; {result['notes'][1] if len(result['notes']) > 1 else ''})",
                  flush=True)
            if args.empanada_python is not None and device == "cpu":
                reference_run = time_empanada(args.empanada_python, model, data, layers, args)
                result["empanada"] = reference_run
                ours = result["seconds_per_iteration"]
                theirs = reference_run["steady_seconds_per_step"]
                losses = reference_run["losses"]
                print(f"  empanada-napari 1.2.4 same data and weights: {theirs:.2f} s/iteration "
                      f"(loss {losses[0]:.3f} -> {losses[-1]:.3f}); ours is {theirs / ours:.2f}x faster",
                      flush=True)
    summary(results, bound)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
