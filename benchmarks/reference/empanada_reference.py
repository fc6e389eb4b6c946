"""Run empanada-napari 1.2.4's own code paths, for side-by-side benchmarks.

This script runs in a *separate* virtual environment that has empanada-napari installed (see
benchmarks/README.md); it never imports empanada_desktop. It calls empanada's public entry points
(``empanada_napari.inference.Engine2d``, ``Engine3d`` with ``stack_postprocessing``, and
``empanada_napari.finetune.main``) on a model config
and data that our benchmark scripts prepare, and prints one JSON line with the timings.

    REF=/tmp/empvenv/bin/python
    $REF benchmarks/reference/empanada_reference.py infer2d --config M.yaml --image I.tif --out L.tif
    $REF benchmarks/reference/empanada_reference.py infer3d --config M.yaml --volume V.tif --out L.tif
    $REF benchmarks/reference/empanada_reference.py finetune --config M.yaml --train DIR \
        --layers none --iterations 3 --patch-size 256 --batch-size 16
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _load_yaml(path):
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def infer2d(args) -> dict:
    import numpy as np
    import tifffile
    from empanada_napari.inference import Engine2d

    model_config = _load_yaml(args.config)
    image = tifffile.imread(args.image)
    engine = Engine2d(
        model_config,
        inference_scale=1,
        label_divisor=1000,
        nms_threshold=args.center_confidence,
        nms_kernel=3,
        confidence_thr=args.confidence,
        fine_boundaries=False,
        tile_size=0,
        use_gpu=args.device != "cpu",
    )
    engine.infer(image)  # warm-up: first call pays for TorchScript optimisation passes
    seconds = []
    labels = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        labels = engine.infer(image)
        seconds.append(time.perf_counter() - start)
    tifffile.imwrite(args.out, np.asarray(labels, dtype=np.int32))
    return {"task": "infer2d", "seconds": seconds, "best": min(seconds), "shape": list(image.shape)}


def infer3d(args) -> dict:
    import numpy as np
    import tifffile
    from empanada_napari.inference import Engine3d, stack_postprocessing

    model_config = _load_yaml(args.config)
    volume = tifffile.imread(args.volume)
    start = time.perf_counter()
    engine = Engine3d(
        model_config,
        median_kernel_size=args.median,
        nms_threshold=args.center_confidence,
        nms_kernel=3,
        confidence_thr=args.confidence,
        min_size=args.min_size,
        min_extent=args.min_extent,
        use_gpu=args.device != "cpu",
        save_panoptic=False,
    )
    loaded = time.perf_counter()
    _, trackers = engine.infer_on_axis(volume, "xy")
    labels = None
    # stack_postprocessing is a napari thread_worker; call the generator it wraps, in this thread.
    for labels, _, _ in stack_postprocessing.__wrapped__(
        {"xy": trackers}, None, model_config, min_size=args.min_size, min_extent=args.min_extent
    ):
        pass  # single-class models yield one volume
    done = time.perf_counter()
    tifffile.imwrite(args.out, np.asarray(labels, dtype=np.int32))
    return {"task": "infer3d", "seconds": done - loaded, "load_seconds": loaded - start,
            "shape": list(volume.shape)}


def finetune(args) -> dict:
    import copy

    from empanada.config_loaders import load_config
    from empanada_napari import finetune as ft

    main_config = os.path.join(os.path.dirname(ft.__file__), "training", "finetune_config.yaml")
    config = load_config(main_config)
    model_config = _load_yaml(args.config)
    config["MODEL"] = {k: v for k, v in model_config.items() if k != "FINETUNE"}
    config["FINETUNE"] = copy.deepcopy(model_config["FINETUNE"])
    out_dir = tempfile.mkdtemp(prefix="empanada_ref_")
    config["model_name"] = "reference_benchmark"
    config["TRAIN"]["train_dir"] = args.train
    config["TRAIN"]["model_dir"] = out_dir
    config["TRAIN"]["finetune_layer"] = args.layers
    config["TRAIN"]["batch_size"] = args.batch_size
    n_images = len(glob.glob(os.path.join(args.train, "**/images/*")))
    steps_per_epoch = n_images // args.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"need at least {args.batch_size} images in {args.train}, found {n_images}")
    epochs = max(1, args.iterations // steps_per_epoch)
    for aug in config["TRAIN"]["augmentations"]:
        for key in list(aug):
            if ("height" in key or "width" in key) and aug[key] is None:
                aug[key] = args.patch_size
    # empanada sets save_freq = epochs // 5, which divides by zero below 5 epochs; saving is not
    # what is measured here, so push it past the end of the run.
    config["TRAIN"]["save_freq"] = epochs + 1
    config["EVAL"]["eval_dir"] = None
    config["EVAL"]["epochs_per_eval"] = epochs + 1
    config["TRAIN"]["schedule_params"]["epochs"] = epochs
    for metric in config["TRAIN"]["metrics"] + config["EVAL"]["metrics"]:
        metric["labels"] = config["MODEL"]["labels"]

    epoch_seconds = []
    original_train = ft.train

    def timed_train(*train_args, **train_kwargs):
        start = time.perf_counter()
        result = original_train(*train_args, **train_kwargs)
        epoch_seconds.append(time.perf_counter() - start)
        return result

    ft.train = timed_train
    from empanada import losses as empanada_losses

    criterion_class = empanada_losses.__dict__[config["FINETUNE"]["criterion"]]
    original_forward = criterion_class.forward
    recorded_losses = []

    def recording_forward(self, output, target):
        loss, aux = original_forward(self, output, target)
        recorded_losses.append(float(loss))
        return loss, aux

    criterion_class.forward = recording_forward
    if args.device == "cpu":
        import torch

        torch.cuda.is_available = lambda: False  # empanada picks cuda:0 whenever it exists
    start = time.perf_counter()
    ft.main(config)
    total = time.perf_counter() - start
    per_step = [s / steps_per_epoch for s in epoch_seconds]
    steady = per_step[1:] if len(per_step) > 1 else per_step
    return {
        "task": "finetune",
        "layers": args.layers,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_step": per_step,
        "steady_seconds_per_step": sum(steady) / len(steady),
        "total_seconds": total,
        "losses": recorded_losses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    tasks = {name: sub.add_parser(name) for name in ("infer2d", "infer3d", "finetune")}
    for task in tasks.values():
        task.add_argument("--config", required=True, help="the empanada model .yaml")
        task.add_argument("--device", default="cpu")
    for name in ("infer2d", "infer3d"):
        tasks[name].add_argument("--out", required=True)
        tasks[name].add_argument("--confidence", type=float, default=0.5)
        tasks[name].add_argument("--center-confidence", type=float, default=0.1)
    tasks["infer2d"].add_argument("--image", required=True)
    tasks["infer2d"].add_argument("--repeats", type=int, default=3)
    tasks["infer3d"].add_argument("--volume", required=True)
    tasks["infer3d"].add_argument("--median", type=int, default=3)
    tasks["infer3d"].add_argument("--min-size", type=int, default=500)
    tasks["infer3d"].add_argument("--min-extent", type=int, default=4)
    tasks["finetune"].add_argument("--train", required=True)
    tasks["finetune"].add_argument("--layers", default="none")
    tasks["finetune"].add_argument("--iterations", type=int, default=3)
    tasks["finetune"].add_argument("--patch-size", type=int, default=256)
    tasks["finetune"].add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    result = {"infer2d": infer2d, "infer3d": infer3d, "finetune": finetune}[args.task](args)
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
