"""Annotation saved by suggested patches: finetuning on K suggested vs K random patches.

The setting (``benchmarks/suggest_data.py``): synthetic EM-like scenes where a few blobs of
each image (about 30% of it) show a "novel" style that the base model never saw. The base model
(PanopticDeepLab, ResNet-18 encoder, 64 decoder channels, random start) is trained briefly on
normal-style scenes only, with the app's own finetuning loop. Then, for K = 4, 8, 16 and both
strategies, the base model is finetuned on K labelled 128 px patches cut from the same pool of
images, and scored (foreground IoU) on held-out scenes that neither strategy saw:

- suggested: ``suggest_patches`` on the pool (its uncertainty, diversity and ranking);
- random: non-overlapping random patches of the pool (``core.patches.random_patches``).

Labels of the chosen patches are the ground truth (the user corrects the pre-filled prediction).
Every (strategy, K) is finetuned with several seeds; random patches also change with the seed.
It also measures how well each uncertainty signal's patch score ranks the base model's actual
patch error (Spearman correlation over all candidate patches of the pool).

    python benchmarks/suggest_vs_random.py --work /tmp/suggest-bench          # all stages
    python benchmarks/suggest_vs_random.py --work /tmp/suggest-bench --plot docs/suggest_vs_random.png

Resumable: every finished stage and finetuning run is stored in ``<work>/results.json``; run the
same command again after an interruption and it continues.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

PATCH = 128
BASE_NAME = "bench_base"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="work folder (kept; resumable)")
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seeds", type=int, default=3, help="finetuning seeds per strategy and K")
    parser.add_argument("--pool", type=int, default=8, help="images to pick patches from")
    parser.add_argument("--test", type=int, default=4, help="held-out images")
    parser.add_argument("--base-images", type=int, default=8, help="normal-style images for the base model")
    parser.add_argument("--size", type=int, default=384, help="side of pool and test images")
    parser.add_argument("--novel-share", type=float, default=0.3)
    parser.add_argument("--base-iterations", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=40, help="finetuning iterations per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--layers", default="none", help="finetunable layers of the K-patch runs (default none)")
    parser.add_argument("--weight-gamma", type=float, default=0.0,
                        help="source weighting of the K-patch runs: 0 (default) gives the new patches and the "
                             "base data half the samples each, whatever K; 0.7 is the model config's value")
    parser.add_argument("--tta", type=int, default=4)
    parser.add_argument("--plot", type=Path, help="write the IoU-vs-K plot (PNG) here")
    return parser.parse_args(argv)


# -- state ------------------------------------------------------------------------------------


class State:
    """results.json in the work folder: one entry per finished stage or run."""

    def __init__(self, work: Path):
        self.path = work / "results.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value) -> None:
        from empanada_desktop.core.atomic import write_text

        self.data[key] = value
        write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- data -------------------------------------------------------------------------------------


def make_data(args, work: Path) -> None:
    import tifffile

    from empanada_desktop.core.dataset import write_pair
    from suggest_data import novel_region, scene

    data = work / "data"
    if (data / "done").exists():
        return
    log("rendering scenes")
    pool_images, pool_labels, test_images, test_labels, test_regions, pool_regions = [], [], [], [], [], []
    for i in range(args.pool):
        image, labels = scene(1000 + i, args.size, args.novel_share)
        pool_images.append(image)
        pool_labels.append(labels)
        pool_regions.append(novel_region(1000 + i + 10_000, args.size, args.novel_share))
    for i in range(args.test):
        image, labels = scene(5000 + i, args.size, args.novel_share)
        test_images.append(image)
        test_labels.append(labels)
        test_regions.append(novel_region(5000 + i + 10_000, args.size, args.novel_share))
    data.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(data / "pool.tif", np.stack(pool_images))
    tifffile.imwrite(data / "pool_labels.tif", np.stack(pool_labels))
    tifffile.imwrite(data / "pool_regions.tif", np.stack(pool_regions).astype(np.uint8))
    tifffile.imwrite(data / "test.tif", np.stack(test_images))
    tifffile.imwrite(data / "test_labels.tif", np.stack(test_labels))
    tifffile.imwrite(data / "test_regions.tif", np.stack(test_regions).astype(np.uint8))
    for i in range(args.base_images):
        image, labels = scene(9000 + i, 256, 0.0)
        write_pair(data / "base_train", "normal", f"normal_{i:03d}", image, labels)
    (data / "done").write_text("ok")


def load(work: Path, name: str) -> np.ndarray:
    import tifffile

    return tifffile.imread(work / "data" / f"{name}.tif")


# -- models -----------------------------------------------------------------------------------


def finetune_fn():
    try:
        from empanada_desktop.backend.finetune.loop import finetune
    except ImportError:  # the loop module was being split when this was written
        from empanada_desktop.backend.finetune import finetune
    return finetune


def register_small_model(name: str) -> None:
    """PanopticDeepLabPR, ResNet-18 encoder, 64 decoder channels, random weights, registered."""
    import dataclasses
    import tempfile

    import torch

    from empanada_desktop.backend.models import build_model
    from empanada_desktop.backend.torchscript import script_model, verify_model_file
    from empanada_desktop.core.registry import ModelRegistry

    registry = ModelRegistry()
    if name in {m.name for m in registry.list()}:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("PanopticDeepLabPR", encoder="resnet18", decoder_channels=64).eval()
    config = dataclasses.replace(registry.get("MitoNet_v1").config, architecture="PanopticDeepLabPR",
                                 encoder="resnet18", padding_factor=16, description="benchmark model")
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / f"{name}.pth"
        script_model(model).save(str(weights))
        registry.register(name, config, weights, copy=True, verify=verify_model_file)


def run_finetune(model: str, train_dirs, new_name: str, out_dir: Path, *, iterations: int,
                 batch_size: int, layers: str, seed: int, register: bool = False, weight_gamma: float | None = None):
    from empanada_desktop.backend.events import run_to_end
    from empanada_desktop.backend.finetune.config import FinetuneConfig

    config = FinetuneConfig(model=model, train_dirs=train_dirs, new_name=new_name, out_dir=out_dir,
                            iterations=iterations, patch_size=PATCH, batch_size=batch_size, layers=layers,
                            device="cpu", seed=seed, register=register, checkpoint_every=0, validations=0,
                            duplicate_patches=True, weight_gamma=weight_gamma)
    return run_to_end(finetune_fn()(config))[1]


def train_base(args, work: Path, state: State) -> None:
    from empanada_desktop.core.registry import ModelRegistry

    if state.get("base") and BASE_NAME in {m.name for m in ModelRegistry().list()}:
        return
    register_small_model("bench_start")
    log(f"training the base model: {args.base_iterations} iterations on normal-style scenes")
    started = time.perf_counter()
    out = work / "runs" / "base"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    run_finetune("bench_start", [work / "data" / "base_train"], BASE_NAME, out, iterations=args.base_iterations,
                 batch_size=8, layers="all", seed=0, register=True)
    metrics = evaluate_model(work, BASE_NAME)
    state.put("base", {"seconds": time.perf_counter() - started, **metrics})
    log(f"base model: {metrics}")


def evaluate_model(work: Path, model_name: str | None = None, pth: Path | None = None) -> dict:
    """Foreground IoU on the held-out scenes: all pixels, novel region, normal region."""
    from empanada_desktop.backend.inference.engine2d import Engine2D
    from empanada_desktop.backend.inference.evaluate import validation_config
    from empanada_desktop.backend.loading import load_registered
    from empanada_desktop.backend.torchscript import load_model

    model, model_config = load_registered(BASE_NAME if model_name is None else model_name, "cpu")
    if pth is not None:
        model = load_model(pth, "cpu")
    engine = Engine2D(model, model_config, validation_config(model_config), "cpu")
    images, labels, regions = load(work, "test"), load(work, "test_labels"), load(work, "test_regions") > 0
    counts = {key: [0, 0] for key in ("all", "novel", "normal")}
    for image, truth, region in zip(images, labels, regions):
        pred = engine.segment(image) > 0
        truth = truth > 0
        for key, where in (("all", np.ones_like(region)), ("novel", region), ("normal", ~region)):
            counts[key][0] += int((pred & truth & where).sum())
            counts[key][1] += int(((pred | truth) & where).sum())
    return {f"iou_{key}" if key != "all" else "iou": inter / max(union, 1) for key, (inter, union) in counts.items()}


# -- patches ----------------------------------------------------------------------------------


def write_patches(folder: Path, boxes, images, labels) -> None:
    from empanada_desktop.core.dataset import write_pair
    from empanada_desktop.core.patches import crop, patch_name
    from suggest_data import demo

    for box in boxes:
        image = crop(images, box)
        mask = demo.relabel_sequential(crop(labels, box).astype(np.int32))
        write_pair(folder, "pool", patch_name("pool", box), image, mask)


def suggested_boxes(args, work: Path, k: int, state: State):
    from empanada_desktop.backend.events import run_to_end
    from empanada_desktop.backend.suggest import SuggestConfig, suggest_patches
    from empanada_desktop.core.patches import PatchBox

    key = f"suggest-boxes-{k}"
    if state.get(key) is None:
        started = time.perf_counter()
        config = SuggestConfig(model=BASE_NAME, image=load(work, "pool"), n=k, patch_size=PATCH, scope="stack",
                               max_slices=args.pool, tta=args.tta, device="cpu", predict=False)
        _events, result = run_to_end(suggest_patches(config))
        regions = load(work, "pool_regions") > 0
        novel = [float(regions[p.box.index, p.box.row:p.box.row + PATCH, p.box.col:p.box.col + PATCH].mean())
                 for p in result.patches]
        state.put(key, {"boxes": [p.box.to_dict() for p in result.patches], "seconds": time.perf_counter() - started,
                        "novel_share_of_patches": float(np.mean(novel))})
        log(f"suggested {k} patches in {time.perf_counter() - started:.1f} s; novel share {np.mean(novel):.2f}")
    return [PatchBox(**b) for b in state.get(key)["boxes"]]


def random_boxes(args, k: int, seed: int):
    from empanada_desktop.core.patches import random_patches

    rng = np.random.default_rng(10_000 + 97 * seed + k)
    return random_patches((args.pool, args.size, args.size), k, PATCH, rng)


def finetune_runs(args, work: Path, state: State) -> None:
    images, labels = load(work, "pool"), load(work, "pool_labels")
    regions = load(work, "pool_regions") > 0
    for k in args.ks:
        for strategy in ("suggested", "random"):
            for seed in range(args.seeds):
                key = f"run-{strategy}-{k}-{seed}"
                if state.get(key):
                    continue
                boxes = suggested_boxes(args, work, k, state) if strategy == "suggested" else random_boxes(args, k, seed)
                folder = work / "patches" / key
                if folder.exists():
                    import shutil

                    shutil.rmtree(folder)
                write_patches(folder, boxes, images, labels)
                started = time.perf_counter()
                # The new patches join the data the base model was trained on (a growing
                # training set): on the new patches alone, both strategies forget the normal style.
                result = run_finetune(BASE_NAME, [work / "data" / "base_train", folder], f"ft_{strategy}_{k}_{seed}",
                                      work / "runs" / key,
                                      iterations=args.iterations, batch_size=args.batch_size, layers=args.layers,
                                      seed=seed, weight_gamma=args.weight_gamma)
                metrics = evaluate_model(work, pth=result.exported_pth)
                novel = float(np.mean([regions[b.index, b.row:b.row + PATCH, b.col:b.col + PATCH].mean() for b in boxes]))
                state.put(key, {**metrics, "seconds": time.perf_counter() - started, "patches": len(boxes),
                                "novel_share_of_patches": novel})
                log(f"{key}: IoU {metrics['iou']:.3f} (novel {metrics['iou_novel']:.3f}, normal "
                    f"{metrics['iou_normal']:.3f}), patches {novel:.2f} novel, {time.perf_counter() - started:.0f} s")


# -- signals vs error -------------------------------------------------------------------------


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


WEIGHT_SETS = {
    "threshold only": {"threshold": 1.0},
    "tta only": {"tta": 1.0},
    "centers only": {"centers": 1.0},
    "all equal": {"threshold": 1.0, "tta": 1.0, "centers": 1.0},
    "tta + centers": {"tta": 1.0, "centers": 1.0},
    "tta + 0.5 centers": {"tta": 1.0, "centers": 0.5},
    "tta + 0.25 centers": {"tta": 1.0, "centers": 0.25},
    "tta + 0.5 centers + 0.1 threshold": {"tta": 1.0, "centers": 0.5, "threshold": 0.1},
}


def signal_correlations(args, work: Path, state: State) -> None:
    """Spearman correlation of each signal's patch score with the base model's patch error.

    A patch's combined score is the weighted mean of its signals' means (the mean over a box is
    linear), so every weighting is scored from the same per-patch signal means.
    """
    if state.get("signals"):
        return
    from empanada_desktop.backend.inference.engine2d import Engine2D
    from empanada_desktop.backend.loading import load_registered
    from empanada_desktop.backend.suggest.config import DEFAULT_WEIGHTS
    from empanada_desktop.backend.suggest.uncertainty import image_uncertainty
    from empanada_desktop.core.suggest_ranking import grid_positions, window_means

    log("measuring how each signal ranks the base model's patch errors")
    model, model_config = load_registered(BASE_NAME, "cpu")
    engine = Engine2D(model, model_config, None, "cpu")
    images, labels = load(work, "pool"), load(work, "pool_labels")
    regions = load(work, "pool_regions") > 0
    means: dict[tuple[int, str], list] = {}
    errors, novel = [], []
    positions = grid_positions(args.size, PATCH, PATCH // 2)
    for image, truth, region in zip(images, labels, regions):
        wrong = ((engine.segment(image) > 0) != (truth > 0)).astype(np.float64)
        errors.extend(window_means(wrong, PATCH, positions, positions).ravel())
        novel.extend(window_means(region, PATCH, positions, positions).ravel())
        for boundary in (0, 2):
            maps = image_uncertainty(engine, image, tta=args.tta, boundary_px=boundary)
            for name, values in maps.signals.items():
                means.setdefault((boundary, name), []).extend(window_means(values, PATCH, positions, positions).ravel())
    result = {"patches": len(errors), "error_vs_novel_share": spearman(novel, errors)}
    weight_sets = dict(WEIGHT_SETS, **{"default": dict(DEFAULT_WEIGHTS)})
    for boundary in (0, 2):
        for label, weights in weight_sets.items():
            total = sum(weights.values())
            score = sum(w / total * np.asarray(means[(boundary, name)]) for name, w in weights.items() if w)
            result[f"{label} (boundary {boundary} px)"] = spearman(score, errors)
    state.put("signals", result)
    for name, rho in result.items():
        log(f"  {name}: {rho:.3f}" if name != "patches" else f"  over {rho} candidate patches")


# -- report -----------------------------------------------------------------------------------


def summary(args, state: State) -> dict:
    out = {}
    for strategy in ("suggested", "random"):
        for k in args.ks:
            runs = [state.get(f"run-{strategy}-{k}-{seed}") for seed in range(args.seeds)]
            runs = [r for r in runs if r]
            if not runs:
                continue
            ious = [r["iou"] for r in runs]
            out[f"{strategy}-{k}"] = {
                "mean": statistics.fmean(ious), "min": min(ious), "max": max(ious),
                "std": statistics.pstdev(ious), "n": len(ious),
                "novel": statistics.fmean(r["iou_novel"] for r in runs),
                "normal": statistics.fmean(r["iou_normal"] for r in runs),
                "patch_novel_share": statistics.fmean(r["novel_share_of_patches"] for r in runs),
            }
    return out


def report(args, state: State) -> None:
    rows = summary(args, state)
    base = state.get("base") or {}
    print(f"\nbase model on held-out scenes: IoU {base.get('iou', float('nan')):.3f} "
          f"(novel region {base.get('iou_novel', float('nan')):.3f}, normal {base.get('iou_normal', float('nan')):.3f})")
    print(f"{'strategy':>10} {'K':>3} {'IoU mean':>9} {'min':>6} {'max':>6} {'novel':>6} {'normal':>7} {'patches novel':>14}")
    for key, row in rows.items():
        strategy, k = key.split("-")
        print(f"{strategy:>10} {k:>3} {row['mean']:9.3f} {row['min']:6.3f} {row['max']:6.3f} {row['novel']:6.3f} "
              f"{row['normal']:7.3f} {row['patch_novel_share']:14.2f}")
    s8, r8, r16 = rows.get("suggested-8"), rows.get("random-8"), rows.get("random-16")
    if s8 and r8 and r16:
        met = s8["mean"] >= r16["mean"] or s8["mean"] - r8["mean"] >= 0.05
        print(f"\ngoal (K=8 suggested >= K=16 random, or >= K=8 random + 0.05): "
              f"{s8['mean']:.3f} vs {r16['mean']:.3f} / {r8['mean']:.3f} + 0.05 -> {'MET' if met else 'NOT met'}")
    signals = state.get("signals")
    if signals:
        print("\nSpearman correlation of patch score with the base model's patch error:")
        for name, rho in signals.items():
            if name != "patches":
                print(f"  {name:32s} {rho:6.3f}")


def plot(args, work: Path, state: State, path: Path) -> None:
    """Left: IoU vs K for both strategies; right: a pool image, its uncertainty (the base model)
    and the suggested and random patches that fell on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    rows = summary(args, state)
    fig, (ax, ax_image) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=80, gridspec_kw={"width_ratios": [1.25, 1]})
    for strategy, colour in (("suggested", "tab:orange"), ("random", "tab:blue")):
        ks = [k for k in args.ks if f"{strategy}-{k}" in rows]
        mean = [rows[f"{strategy}-{k}"]["mean"] for k in ks]
        low = [rows[f"{strategy}-{k}"]["min"] for k in ks]
        high = [rows[f"{strategy}-{k}"]["max"] for k in ks]
        ax.plot(ks, mean, "o-", color=colour, label=f"{strategy} (mean; band: min-max of {args.seeds} seeds)")
        ax.fill_between(ks, low, high, color=colour, alpha=0.2)
    base = state.get("base")
    if base:
        ax.axhline(base["iou"], color="gray", linestyle="--", label="base model")
    ax.set_xscale("log", base=2)
    ax.set_xticks(args.ks, [str(k) for k in args.ks])
    ax.set_xlabel(f"labelled patches K ({PATCH} px)")
    ax.set_ylabel("foreground IoU on held-out scenes")
    ax.set_title("Finetuning on suggested vs random patches", fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)

    from empanada_desktop.backend.inference.engine2d import Engine2D
    from empanada_desktop.backend.loading import load_registered
    from empanada_desktop.backend.suggest.config import DEFAULT_WEIGHTS
    from empanada_desktop.backend.suggest.uncertainty import image_uncertainty
    from empanada_desktop.core.patches import PatchBox

    k = max(args.ks)
    suggested = [PatchBox(**b) for b in (state.get(f"suggest-boxes-{k}") or {}).get("boxes", [])]
    shown = max(range(args.pool), key=lambda i: sum(b.index == i for b in suggested)) if suggested else 0
    model, model_config = load_registered(BASE_NAME, "cpu")
    maps = image_uncertainty(Engine2D(model, model_config, None, "cpu"), load(work, "pool")[shown], tta=args.tta)
    ax_image.imshow(load(work, "pool")[shown], cmap="gray")
    heat = maps.combined(DEFAULT_WEIGHTS)
    low, high = np.quantile(heat, [0.8, 0.995])
    ax_image.imshow(np.ma.masked_less(heat, low), cmap="inferno", alpha=0.6, vmin=low, vmax=max(high, low + 1e-3))
    ax_image.contour(load(work, "pool_regions")[shown], [0.5], colors="cyan", linewidths=0.8)
    for boxes, colour, style in ((suggested, "tab:orange", "-"), (random_boxes(args, k, 0), "tab:blue", "--")):
        for box in boxes:
            if box.index == shown:
                ax_image.add_patch(Rectangle((box.col, box.row), box.size, box.size, fill=False, edgecolor=colour,
                                             linestyle=style, linewidth=1.6))
    ax_image.set_title(f"pool image {shown}: top 20% uncertainty (heat), novel region (cyan),\n"
                       f"K={k} suggested (orange) and random seed 0 (blue, dashed) patches on it", fontsize=8)
    ax_image.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    log(f"wrote {path}")


def main(argv=None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["EMPANADA_DESKTOP_HOME"] = str(work / "home")
    os.environ["EMPANADA_DESKTOP_EMPANADA_DIR"] = str(work / "empanada")
    import logging

    logging.basicConfig(level=logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    state = State(work)
    protocol = {name: getattr(args, name) for name in ("pool", "test", "base_images", "size", "novel_share",
                                                         "base_iterations", "iterations", "batch_size", "layers", "tta",
                                                         "weight_gamma")}
    if state.get("protocol") not in (None, protocol):
        print(f"error: {work} holds results of other settings ({state.get('protocol')}); use another --work folder",
              file=sys.stderr)
        return 2
    state.put("protocol", protocol)
    started = time.perf_counter()
    make_data(args, work)
    train_base(args, work, state)
    signal_correlations(args, work, state)
    finetune_runs(args, work, state)
    state.put("last_run_seconds", time.perf_counter() - started)
    report(args, state)
    if args.plot:
        plot(args, work, state, args.plot)
    log(f"done in {time.perf_counter() - started:.0f} s (this invocation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
