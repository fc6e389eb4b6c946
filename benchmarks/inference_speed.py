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

Random weights alone label almost nothing, which would make the agreement check empty. The
random model is therefore *calibrated* on the benchmark image: the biases of its last semantic
layers are shifted so that about 40% of the pixels are foreground, and the center head's bias so
that its top 1% exceeds the center threshold. Both engines then have real objects to group.
Pass real weights with ``--weights MitoNet_v1.pth`` (and ``--config``) when they are on the machine.
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

from empanada_desktop.backend.inference.config import InferenceConfig  # noqa: E402
from empanada_desktop.backend.inference.engine2d import Engine2D  # noqa: E402
from empanada_desktop.backend.inference.engine3d import segment_volume  # noqa: E402
from empanada_desktop.core.metrics import semantic_iou  # noqa: E402

REFERENCE = ROOT / "benchmarks" / "reference" / "empanada_reference.py"


def synthetic_em(shape, seed=0) -> np.ndarray:
    """Gray background with darker blobs and noise, uint8: roughly EM-like statistics."""
    rng = np.random.default_rng(seed)
    image = rng.normal(150, 20, size=shape).astype(np.float32)
    n = max(1, int(np.prod(shape[-2:]) / 4000))
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    for _ in range(n):
        cy, cx, r = rng.integers(0, shape[-2]), rng.integers(0, shape[-1]), rng.integers(8, 25)
        image[..., (yy - cy) ** 2 + (xx - cx) ** 2 < r * r] -= 60
    return np.clip(image, 0, 255).astype(np.uint8)


def calibrate(native: torch.nn.Module, image: np.ndarray, model_config) -> None:
    """Shift the last biases of a random model so it labels objects on ``image`` (see above)."""
    x = torch.from_numpy(image).float()[None, None] / 255.0
    x = (x - model_config.norms.mean) / model_config.norms.std
    params = dict(native.named_parameters())
    with torch.no_grad():
        for _ in range(3):  # PointRend refines from the coarse logits: a few rounds settle it
            out = native(x)
            shift = torch.quantile(out["sem_logits"].flatten()[::7], 0.6)
            params["semantic_head.head.1.bias"] -= shift
            params["semantic_pr.point_head.predictor.bias"] -= shift
        peak = torch.quantile(native(x)["ctr_hmp"].flatten()[::7], 0.99)
        params["ins_center.head.1.bias"] += 0.3 - peak


def make_model(out_dir: Path, weights: Path | None, config: Path | None, image: np.ndarray):
    from empanada_desktop.backend.torchscript import export_empanada, load_model
    from empanada_desktop.core.model_config import ModelConfig

    if weights is not None:
        model = load_model(weights, "cpu")
        model_config = ModelConfig.from_yaml(config) if config else _mitonet_config()
        return model, model_config.with_model_path(weights), Path(config) if config else None
    from empanada_desktop.backend.models import build_model

    torch.manual_seed(0)
    native = build_model("PanopticDeepLabPR", encoder="resnet50", fused_encoder=True).eval()
    calibrate(native, image, _mitonet_config())
    pth, yaml_path = export_empanada(native, _mitonet_config(), out_dir, "MitoNet_v1_random")
    return load_model(pth, "cpu"), ModelConfig.from_yaml(yaml_path), yaml_path


def _mitonet_config():
    from empanada_desktop.core.registry import ModelRegistry

    return ModelRegistry().get("MitoNet_v1").config


def time_2d(model, model_config, image, device, repeats) -> tuple[float, np.ndarray]:
    # The default tile size (2048) leaves a 1024 px image whole, like empanada's Engine2d (tile 0).
    engine = Engine2D(model, model_config, InferenceConfig(), device=device)
    labels = engine.segment(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        labels = engine.segment(image)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), labels


def time_3d(model, model_config, volume_path, out_path, device) -> float:
    config = InferenceConfig(median_kernel=3, min_size=500)
    start = time.perf_counter()
    for _ in segment_volume(model, str(volume_path), config, out_path, model_config=model_config, device=device):
        pass
    return time.perf_counter() - start


def run_empanada(python: str, config_yaml: Path, image_path: Path, out: Path, repeats: int) -> float:
    done = subprocess.run(
        [python, str(REFERENCE), "infer2d", "--config", str(config_yaml), "--image", str(image_path),
         "--out", str(out), "--repeats", str(repeats), "--confidence", "0.5", "--device", "cpu"],
        capture_output=True, text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"empanada reference run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return statistics.median(json.loads(lines[-1][len("RESULT "):])["seconds"])


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
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.stack, args.repeats = 256, "4x128x128", 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image = synthetic_em((args.size, args.size))
        model, model_config, config_yaml = make_model(folder, args.weights, args.config, image)
        image_path = folder / "image.tif"
        tifffile.imwrite(image_path, image)
        seconds, labels = time_2d(model, model_config, image, device, args.repeats)
        print(f"2D {args.size} x {args.size}: {seconds:.2f} s (median of {args.repeats})")
        if args.empanada_python and config_yaml is not None:
            theirs = folder / "empanada_labels.tif"
            their_seconds = run_empanada(args.empanada_python, config_yaml, image_path, theirs, args.repeats)
            their_labels = tifffile.imread(theirs)
            iou = semantic_iou(labels, their_labels)
            print(f"  ours: {len(np.unique(labels)) - 1} objects, {np.mean(labels > 0):.1%} foreground; "
                  f"empanada: {len(np.unique(their_labels)) - 1} objects, {np.mean(their_labels > 0):.1%}")
            print(
                f"  empanada-napari: {their_seconds:.2f} s -> ours is {their_seconds / seconds:.2f}x "
                f"faster; foreground IoU of the two label images {iou:.4f}"
            )
        if args.stack:
            shape = tuple(int(v) for v in args.stack.split("x"))
            volume_path = folder / "stack.tif"
            tifffile.imwrite(volume_path, synthetic_em(shape, seed=1), photometric="minisblack")
            seconds_3d = time_3d(model, model_config, volume_path, folder / "stack_labels.tif", device)
            print(f"3D {args.stack}: {seconds_3d:.1f} s ({seconds_3d / shape[0]:.2f} s per slice)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
