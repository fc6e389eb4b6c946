"""Inference speed: 2D on a 1024 x 1024 image and 3D on a 64 x 512 x 512 stack (benchmark, not a test).

The model is MitoNet_v1's architecture (PanopticDeepLabPR, ResNet50, batch norm fused into the
encoder as in the released file) with seeded random weights, scripted and exported in empanada's
format (.pth + .yaml) so that empanada-napari can load the very same file.

    .venv/bin/python benchmarks/inference_speed.py                      # full sizes, CPU
    .venv/bin/python benchmarks/inference_speed.py --quick              # 256 px and 4 x 128 x 128
    .venv/bin/python benchmarks/inference_speed.py --device cuda
    .venv/bin/python benchmarks/inference_speed.py --empanada-python /path/to/empanada-venv/bin/python

Side by side with empanada-napari 1.2.4: with ``--empanada-python``, the same image and model
files are handed to that interpreter, which runs empanada-napari's own ``Engine2d`` on them
(``benchmarks/reference/empanada_reference.py infer2d``; same settings: confidence 0.5, center
threshold 0.1, NMS kernel 3, coarse boundaries, no downsampling, no tiling); it reports its time
and writes its labels, and this benchmark prints the speed ratio and the foreground IoU of the
two label images.

Random weights label almost nothing, which makes the agreement check empty. For a meaningful
one, pass a model that segments the synthetic image: ``benchmarks/make_bench_model.py`` trains the
same architecture (with batch norm, as MitoNet_v1 was) on the same kind of synthetic image
(bright objects on a darker, noisy background) and writes ``bench_bn.pth`` + ``.yaml``; give
them as ``--weights`` and ``--config`` (or real MitoNet_v1 weights, where they are on the
machine). The run prints how sure the model is on the image (pixels whose foreground
probability is within 0.1 of 0.5) and flags a model that is not a working segmenter there.

The CPU's capability line (``benchmarks/cpu_bound.py``) comes first; the summary at the end gives
each time also as achieved GFLOP/s of the model and as a fraction of this machine's measured
fp32 bound (inference runs in float32; ``--bound bound.json`` reuses a ``cpu_bound.py --json``
file, otherwise it is measured first, about 20 s). The FLOPs are the model forward's matrix and
convolution operations, counted with ``FlopCounterMode`` on one ``Engine2D.forward`` (per slice
for the stack); the times include post-processing, so the fraction is of the whole job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu_bound import fraction_text, load_or_measure  # noqa: E402

from empanada_desktop.backend.cpu import cpu_capability_info  # noqa: E402
from empanada_desktop.backend.flops import count_flops  # noqa: E402
from empanada_desktop.backend.inference.config import InferenceConfig  # noqa: E402
from empanada_desktop.backend.inference.engine2d import Engine2D  # noqa: E402
from empanada_desktop.backend.inference.engine3d import segment_volume  # noqa: E402
from empanada_desktop.core.metrics import semantic_iou  # noqa: E402

REFERENCE = ROOT / "benchmarks" / "reference" / "empanada_reference.py"


def synthetic_em(shape, seed=0) -> np.ndarray:
    """Noisy gray background with brighter elliptical objects, uint8: the same kind of image as
    the training set of ``benchmarks/finetune_speed.py``, so a model it trained finds objects."""
    rng = np.random.default_rng(seed)
    image = rng.normal(90, 20, size=shape).astype(np.float32)
    n = max(1, int(np.prod(shape[-2:]) / 8000))
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    for _ in range(n):
        cy, cx = rng.integers(0, shape[-2]), rng.integers(0, shape[-1])
        ry, rx = rng.integers(6, 24, 2)
        image[..., ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] += 60
    return np.clip(image, 0, 255).astype(np.uint8)


def make_model(out_dir: Path, weights: Path | None, config: Path | None):
    from empanada_desktop.backend.torchscript import export_empanada, load_model
    from empanada_desktop.core.model_config import ModelConfig

    if weights is not None:
        model = load_model(weights, "cpu")
        model_config = ModelConfig.from_yaml(config) if config else _mitonet_config()
        return model, model_config.with_model_path(weights), Path(config) if config else None
    from empanada_desktop.backend.models import build_model

    torch.manual_seed(0)
    native = build_model("PanopticDeepLabPR", encoder="resnet50", fused_encoder=True).eval()
    pth, yaml_path = export_empanada(native, _mitonet_config(), out_dir, "MitoNet_v1_random")
    return load_model(pth, "cpu"), ModelConfig.from_yaml(yaml_path), yaml_path


def _mitonet_config():
    from empanada_desktop.core.registry import ModelRegistry

    return ModelRegistry().get("MitoNet_v1").config


def time_2d(model, model_config, image, device, repeats, center_confidence, int8="off") -> tuple[float, np.ndarray, str]:
    """Median seconds of ``repeats`` runs after a warm-up run (which also calibrates int8)."""
    # The default tile size (2048) leaves a 1024 px image whole, like empanada's Engine2d (tile 0).
    from empanada_desktop.backend.inference import int8 as int8_path

    int8_path.forget(model)  # each run calibrates for itself (in its warm-up run)
    engine = Engine2D(
        model, model_config, InferenceConfig(center_confidence_thr=center_confidence, int8=int8), device=device
    )
    labels = engine.segment(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        labels = engine.segment(image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), labels, engine.precision_note


def time_3d(model, model_config, volume_path, out_path, device, center_confidence, int8="off") -> tuple[float, str]:
    """Seconds of one whole ``segment_volume`` run (int8 calibration included)."""
    from empanada_desktop.backend.events import Message

    from empanada_desktop.backend.inference import int8 as int8_path

    config = InferenceConfig(median_kernel=3, min_size=500, min_extent=4,
                             center_confidence_thr=center_confidence, int8=int8)
    int8_path.forget(model)  # the stack's time includes its calibration, as for a user's first stack
    start = time.perf_counter()
    note = ""
    for event in segment_volume(model, str(volume_path), config, out_path, model_config=model_config, device=device):
        if isinstance(event, Message) and event.text.startswith("model precision"):
            note = event.text
    return time.perf_counter() - start, note


def agreement(ours: np.ndarray, reference: np.ndarray) -> str:
    """Foreground IoU and object counts of two label images (the int8 criterion: IoU >= 0.99,
    counts within 1%)."""
    a, b = len(np.unique(ours)) - 1, len(np.unique(reference)) - 1
    return (f"foreground IoU {semantic_iou(ours, reference):.4f}, objects {a} vs {b} "
            f"({100.0 * (a - b) / max(b, 1):+.1f}%)")


def model_confidence(model, model_config, image) -> dict:
    """How close the model is to its decision on ``image``: the fraction of pixels whose
    foreground probability is within 0.1 of 0.5, and the objects it finds in float32. Agreement
    between precisions only means something for a model that segments the image: one with most
    pixels near 0.5 changes its labels under any perturbation (see make_bench_model.py)."""
    engine = Engine2D(model, model_config, InferenceConfig(int8="off"), device="cpu")
    with torch.inference_mode():
        probs = engine.forward(image).probs
    foreground = probs[0] if probs.shape[0] == 1 else 1 - probs[0]
    return {"uncertain_fraction": float(((foreground - 0.5).abs() < 0.1).float().mean()),
            "objects": int(len(np.unique(engine.segment(image))) - 1)}


def forward_flops(model, model_config, image, device, center_confidence) -> int:
    """Matrix and convolution FLOPs of one ``Engine2D.forward`` over ``image`` (runs it once)."""
    engine = Engine2D(model, model_config, InferenceConfig(center_confidence_thr=center_confidence, int8="off"),
                      device=device)
    return count_flops(engine.forward, image)


def summary(rows: list[tuple[str, float, int, float | None]], bound: dict | None) -> None:
    """(what, our seconds, FLOPs, empanada's seconds or None) -> one line each."""
    print("summary (model GFLOP/s from FlopCounterMode's count; bound from cpu_bound.py):")
    for what, ours, flops, theirs in rows:
        precision = "int8" if "int8=on" in what else "fp32"  # int8 rows: against empanada's quantized engine
        line = f"  {what}: ours {ours:.2f} s, {flops / 1e9:.0f} GFLOP"
        if bound is not None:
            line += f", {fraction_text(flops, ours, precision, bound)}"
        if theirs is not None:
            line += f"; empanada-napari {'quantized' if precision == 'int8' else 'fp32'} {theirs:.2f} s (ours {theirs / ours:.2f}x)"
            if bound is not None:
                line += f", {fraction_text(flops, theirs, precision, bound)}"
        print(line, flush=True)


def run_reference(python: str, task: str, *options: str) -> dict:
    """Run ``benchmarks/reference/empanada_reference.py TASK OPTIONS`` in empanada's venv."""
    done = subprocess.run([python, str(REFERENCE), task, *options], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"empanada reference run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def report(rows: list, what: str, int8: str, seconds: float, labels: np.ndarray, note: str,
           theirs: dict[str, tuple[float, np.ndarray]], flops: int) -> None:
    """Print our run against each of empanada's, and add the summary row (int8 rows are compared
    with empanada's quantized engine, float32 rows with its float32 one)."""
    line = f"{what} ours, int8={int8}: {seconds:.2f} s; {note}"
    for kind, (their_seconds, their_labels) in theirs.items():
        line += (f"\n    vs empanada-napari {kind} {their_seconds:.2f} s: ours {their_seconds / seconds:.2f}x; "
                 f"{agreement(labels, their_labels)}")
    print(line, flush=True)
    rows.append((f"{what}, int8={int8}", seconds, flops, theirs.get("quantized" if int8 == "on" else "fp32", (None,))[0]))


def reference_runs(python: str, task: str, out_stem: Path, quantized: Path | None, *options: str
                   ) -> dict[str, tuple[float, np.ndarray]]:
    """empanada-napari's float32 engine, and its quantized one when ``quantized`` was made:
    {"fp32" | "quantized": (median seconds, labels)}; a failed run is printed and left out."""
    runs = {}
    for kind, extra in (("fp32", []), ("quantized", ["--quantized", str(quantized)] if quantized else None)):
        if extra is None:
            continue
        out = Path(f"{out_stem}_{kind}.tif")
        result = run_reference(python, task, *options, "--out", str(out), *extra)
        if result.get("error"):
            print(f"  empanada-napari {task} {kind}: {result['error']}")
            continue
        seconds = result["seconds"]
        runs[kind] = (statistics.median(seconds) if isinstance(seconds, list) else seconds, tifffile.imread(out))
        print(f"{task} empanada-napari {kind}: {runs[kind][0]:.2f} s", flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that it runs")
    parser.add_argument("--size", type=int, default=1024, help="2D image side")
    parser.add_argument("--stack", default="64x512x512", help="3D stack Z x Y x X ('' to skip)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--weights", type=Path, help="a real empanada .pth (e.g. MitoNet_v1.pth)")
    parser.add_argument("--config", type=Path, help="its .yaml")
    parser.add_argument("--empanada-python", help="python of a venv with empanada-napari 1.2.4")
    parser.add_argument("--center-confidence", type=float, default=0.1,
                        help="center heatmap threshold for both engines (lower it for a briefly trained model)")
    parser.add_argument("--bound", type=Path, metavar="JSON",
                        help="the CPU bound from `cpu_bound.py --json` (default: measure it first)")
    parser.add_argument("--int8", choices=("both", "on", "off"), default="both",
                        help="our engine in float32 (off), int8 (on) or both, side by side (default both)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.stack, args.repeats = 256, "4x128x128", 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(cpu_capability_info().line(), flush=True)
    bound = load_or_measure(args.bound) if device.type == "cpu" else None
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    rows = []
    precisions = {"both": ("off", "on"), "on": ("on",), "off": ("off",)}[args.int8]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image = synthetic_em((args.size, args.size))
        model, model_config, config_yaml = make_model(folder, args.weights, args.config)
        image_path = folder / "image.tif"
        tifffile.imwrite(image_path, image)
        reference = args.empanada_python and config_yaml is not None
        common = ["--config", str(config_yaml), "--confidence", "0.5",
                  "--center-confidence", str(args.center_confidence), "--device", "cpu"]
        quantized = None
        if reference and "on" in precisions and device.type == "cpu":
            quantized = folder / "empanada_quantized.pth"
            made = run_reference(args.empanada_python, "quantize", "--config", str(config_yaml),
                                 "--calibration", str(image_path), "--out", str(quantized))
            if made.get("error"):
                print(f"  empanada's quantized model could not be made: {made['error']}")
                quantized = None
            else:
                print(f"  empanada's quantized model made with its own code in {made.get('seconds', 0):.1f} s")
        flops_2d = forward_flops(model, model_config, image, device, args.center_confidence)
        sure = model_confidence(model, model_config, image)
        print(f"model on the {args.size} px image (float32): {sure['objects']} objects, "
              f"{100 * sure['uncertain_fraction']:.1f}% of pixels within 0.1 of the 0.5 threshold"
              + (" - NOT a working segmenter there: agreement rows mean little (benchmarks/make_bench_model.py)"
                 if sure["uncertain_fraction"] > 0.05 else ""), flush=True)
        theirs_2d = {}
        if reference:
            theirs_2d = reference_runs(args.empanada_python, "infer2d", folder / "empanada", quantized,
                                       *common, "--image", str(image_path), "--repeats", str(args.repeats))
        ours_2d = {}
        for int8 in precisions:
            seconds, labels, note = time_2d(model, model_config, image, device, args.repeats,
                                            args.center_confidence, int8)
            ours_2d[int8] = labels
            report(rows, f"2D {args.size} x {args.size}", int8, seconds, labels, note, theirs_2d, flops_2d)
        if len(ours_2d) == 2:
            print(f"  int8 vs float32 labels (ours): {agreement(ours_2d['on'], ours_2d['off'])}")
        if args.stack:
            shape = tuple(int(v) for v in args.stack.split("x"))
            volume_path = folder / "stack.tif"
            tifffile.imwrite(volume_path, synthetic_em(shape, seed=1), photometric="minisblack")
            slice_image = synthetic_em(shape[1:], seed=1)
            flops_3d = shape[0] * forward_flops(model, model_config, slice_image, device, args.center_confidence)
            theirs_3d = {}
            if reference:
                theirs_3d = reference_runs(args.empanada_python, "infer3d", folder / "empanada_stack", quantized,
                                           *common, "--volume", str(volume_path), "--median", "3",
                                           "--min-size", "500", "--min-extent", "4")
            ours_3d = {}
            for int8 in precisions:
                out = folder / f"stack_labels_{int8}.tif"
                seconds_3d, note = time_3d(model, model_config, volume_path, out, device, args.center_confidence, int8)
                ours_3d[int8] = tifffile.imread(out)
                report(rows, f"3D {args.stack} (xy, {shape[0]} slices)", int8, seconds_3d, ours_3d[int8], note,
                       theirs_3d, flops_3d)
            if len(ours_3d) == 2:
                print(f"  int8 vs float32 labels (ours, 3D): {agreement(ours_3d['on'], ours_3d['off'])}")
    summary(rows, bound)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
