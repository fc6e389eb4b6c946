"""Block-wise volume inference on Dask against the single-process engine (benchmark, not a test).

    .venv/bin/python benchmarks/blockwise_volume.py            # all four parts (about 10 min on 2 cores)
    .venv/bin/python benchmarks/blockwise_volume.py --quick    # small sizes, a smoke run
    .venv/bin/python benchmarks/blockwise_volume.py --parts correctness,overhead

The model is a stand-in that segments the synthetic volume for certain (bright balls on black):
foreground where the intensity is at least 191/255, a center heatmap peaking in each ball's
middle, zero offsets; it runs through the real Engine2D, post-processing, slice linking and
stitching, and costs almost nothing itself, so the timings show the machinery's own overhead
(``--encoder resnet50`` adds a MitoNet-sized encoder's work per tile, so that the overhead reads
as a share of a realistic job).

1. correctness: a volume that fits in memory, 12 blocks on 2 worker processes, against
   ``segment_volume``: object counts, IoU of matched objects, objects split at a block face.
2. overhead: one worker process (all cores as torch threads) with the default blocks against
   ``segment_volume`` in this process, on the same OME-Zarr input; cluster start-up separate.
3. memory: peak RSS per worker on two volumes 4x apart (same blocks, 2 workers).
4. larger than memory: a volume bigger than each worker's memory limit, 2 workers.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from empanada_desktop.backend.cpu import cpu_capability_info  # noqa: E402
from empanada_desktop.backend.events import run_to_end  # noqa: E402
from empanada_desktop.backend.inference.blockwise import BlockwiseSettings, ModelRef, segment_blockwise  # noqa: E402
from empanada_desktop.backend.inference.config import InferenceConfig  # noqa: E402
from empanada_desktop.backend.inference.engine3d import segment_volume  # noqa: E402
from empanada_desktop.core.volumes import open_image  # noqa: E402

MEAN, STD = 0.57571, 0.12765


class BrightBalls(nn.Module):
    """Foreground >= 191/255; centers where the intensity is above 0.6; no offsets.

    ``encoder`` ("resnet18", "resnet50") adds a real encoder's work on every tile, with random
    weights and its output multiplied by 0, so the labels stay exact while each slice costs what a
    MitoNet-sized model's encoder costs: the overhead then reads as a share of a realistic job.
    """

    def __init__(self, encoder: str = "none"):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.encoder = None
        if encoder != "none":
            import torchvision

            net = getattr(torchvision.models, encoder)(weights=None)
            self.encoder = nn.Sequential(*list(net.children())[:-2]).eval()

    def forward(self, x, render_steps: int = 2, interpolate_ins: bool = True):
        intensity = (x * STD + MEAN) * self.scale
        sem = 20.0 * (intensity - 0.75)
        if self.encoder is not None:
            sem = sem + 0.0 * self.encoder(x.expand(-1, 3, -1, -1)).mean()
        factor = 2 ** (render_steps - 2)
        if factor != 1:
            sem = F.interpolate(sem, scale_factor=factor, mode="nearest")
        ctr = F.avg_pool2d((intensity - 0.6).clamp(min=0), 4)
        offsets = torch.zeros((x.shape[0], 2) + ctr.shape[-2:], dtype=x.dtype)
        return {"sem_logits": sem, "ctr_hmp": ctr, "offsets": offsets}


ENCODER = "none"  # set from --encoder before any model is built


def bright_balls_model(encoder: str | None = None):
    from empanada_desktop.core.model_config import ModelConfig

    encoder = encoder or ENCODER
    config = ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="balls.pth",
                         padding_factor=16 if encoder == "none" else 32)  # a ResNet downsamples 32x
    return BrightBalls(encoder), config


def model_ref() -> ModelRef:
    return ModelRef(factory=functools.partial(bright_balls_model, ENCODER), key=f"bright-balls-{ENCODER}")


def ball_tile(shape, seed, radius=(5, 12)):
    """Balls brightest in their middle, non-overlapping, uint8; the tile repeats seamlessly."""
    rng = np.random.default_rng(seed)
    volume = np.zeros(shape, np.float32)
    n = int(np.prod(shape) / 9000)
    for _ in range(n):
        r = float(rng.uniform(*radius))
        c = [int(rng.integers(0, s)) for s in shape]
        lo = [max(0, ci - int(r) - 1) for ci in c]
        hi = [min(s, ci + int(r) + 2) for ci, s in zip(c, shape, strict=True)]
        sub = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        if volume[sub].any():
            continue
        zz, yy, xx = np.ogrid[sub]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        volume[sub] = np.where(d <= r, 255 - 95 * d / r, 0)
    return volume.astype(np.uint8)


def write_input(path: Path, shape, seed=0, tile=(64, 512, 512), sparse=False):
    """An OME-Zarr volume of repeated ball tiles, written tile by tile (``sparse``: one tile in
    eight, the others left empty)."""
    import zarr

    tile = tuple(min(t, s) for t, s in zip(tile, shape, strict=True))
    block = ball_tile(tile, seed)
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = group.create_array("0", shape=shape, chunks=(1,) + tile[1:], dtype="uint8")
    for index in np.ndindex(*[-(-s // t) for s, t in zip(shape, tile, strict=True)]):
        if sparse and sum(index) % 8:
            continue
        sl = tuple(slice(i * t, min((i + 1) * t, s)) for i, t, s in zip(index, tile, shape, strict=True))
        array[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space"} for n in "zyx"],
                                   "datasets": [{"path": "0", "coordinateTransformations": [
                                       {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]
    return path


def settings():
    return InferenceConfig(device="cpu", median_kernel=3, min_size=50, min_extent=2)


def single(path: Path, out: Path) -> tuple[np.ndarray, float]:
    import tifffile

    model, config = bright_balls_model()
    start = time.perf_counter()
    run_to_end(segment_volume(model, open_image(path), settings(), out, model_config=config, device="cpu"))
    return tifffile.imread(out), time.perf_counter() - start


def cluster(workers: int, memory_limit="4GB"):
    import distributed

    cl = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                  memory_limit=memory_limit, dashboard_address=None, silence_logs=40)
    return cl, distributed.Client(cl)


def blockwise(path: Path, out: Path, client, threads: int, block=None, halo=None) -> tuple[np.ndarray | None, float]:
    import zarr

    from empanada_desktop.backend.inference.cluster import ClusterConfig

    start = time.perf_counter()
    run_to_end(segment_blockwise(model_ref(), path, settings(), out, client=client,
                            blocks=BlockwiseSettings(block_size=block, halo=halo, cluster=ClusterConfig(threads=threads))))
    seconds = time.perf_counter() - start
    array = zarr.open_array(str(out / "0"), mode="r")
    return (array[...] if array.nbytes < 2**30 else None), seconds


def peak_rss_mb(client) -> list[float]:
    return sorted(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024).values())


def compare(reference: np.ndarray, result: np.ndarray) -> dict:
    ref_ids, ref_inverse = np.unique(reference, return_inverse=True)
    pairs, counts = np.unique(np.stack([reference.ravel(), result.ravel()]), axis=1, return_counts=True)
    ref_area = dict(zip(*np.unique(reference, return_counts=True), strict=True))
    res_area = dict(zip(*np.unique(result, return_counts=True), strict=True))
    best, split = {}, 0
    for (a, b), n in zip(pairs.T, counts, strict=True):
        if a == 0 or b == 0:
            continue
        best.setdefault(a, []).append((n, b))
    ious = []
    for a in ref_ids[ref_ids > 0]:
        hits = sorted(best.get(a, []), reverse=True)
        if not hits:
            ious.append(0.0)
            continue
        n, b = hits[0]
        ious.append(n / (ref_area[a] + res_area[b] - n))
        split += sum(1 for m, _ in hits[1:] if m >= 0.05 * ref_area[a])
    ious = np.array(ious)
    return {"reference objects": int((ref_ids > 0).sum()), "blockwise objects": len(res_area) - (0 in res_area),
            "share IoU>=0.9": float((ious >= 0.9).mean()), "median IoU": float(np.median(ious)),
            "objects split (>=5% in a 2nd id)": split}


def machine() -> str:
    return f"{cpu_capability_info().line()}; {torch.get_num_threads()} torch threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", default="correctness,overhead,memory,large")
    parser.add_argument("--encoder", default="none", choices=("none", "resnet18", "resnet50"),
                        help="add a real encoder's work per tile (output unused): overhead as a share of a realistic job")
    args = parser.parse_args()
    global ENCODER
    ENCODER = args.encoder
    parts = set(args.parts.split(","))
    q = args.quick
    cores = torch.get_num_threads()
    print(f"# {datetime.date.today()}  {machine()}  python {platform.python_version()} torch {torch.__version__}")
    work = Path(tempfile.mkdtemp(prefix="blockwise-bench-"))
    try:
        if "correctness" in parts:
            shape = (24, 192, 256) if q else (48, 384, 512)
            block = (8, 96, 128) if q else (16, 192, 256)
            path = write_input(work / "c.zarr", shape, seed=1)
            reference, t1 = single(path, work / "c.tif")
            cl, client = cluster(2)
            labels, t2 = blockwise(path, work / "c_out.zarr", client, max(1, cores // 2), block=block, halo=(2, 32, 32))
            client.close(); cl.close()
            blocks = int(np.prod([-(-s // b) for s, b in zip(shape, block, strict=True)]))
            print(f"correctness {shape}, {blocks} blocks of {block}, 2 workers: {compare(reference, labels)}"
                  f"  (single {t1:.1f} s, block-wise {t2:.1f} s)")
        if "overhead" in parts:
            shape = (32, 512, 512) if q else (64, 512, 512)
            path = write_input(work / "o.zarr", shape, seed=2)
            start = time.perf_counter()
            cl, client = cluster(1)
            t_start = time.perf_counter() - start
            singles, blocks = [], []
            for run in range(2):  # alternated: other jobs on the machine load both alike
                singles.append(single(path, work / f"o{run}.tif")[1])
                blocks.append(blockwise(path, work / f"o{run}.zarr", client, cores)[1])
            client.close(); cl.close()
            t_single, t_block = min(singles), min(blocks)
            print(f"overhead {shape}, default blocks, 1 worker process x {cores} threads: single-process "
                  f"{[f'{t:.1f}' for t in singles]} s, block-wise {[f'{t:.1f}' for t in blocks]} s; best "
                  f"{t_single:.1f} vs {t_block:.1f} s ({100 * (t_block / t_single - 1):+.1f}%); cluster start {t_start:.1f} s")
        if "memory" in parts:
            rows = []
            for depth in ((16, 64) if q else (32, 128)):
                shape = (depth, 1024, 1024)
                path = write_input(work / f"m{depth}.zarr", shape, seed=3)
                cl, client = cluster(2)
                _, seconds = blockwise(path, work / f"m{depth}_out.zarr", client, max(1, cores // 2),
                                       block=(16, 512, 512), halo=(2, 32, 32))
                rows.append((shape, peak_rss_mb(client), seconds))
                client.close(); cl.close()
            (s1, r1, _), (s2, r2, _) = rows
            print(f"memory: peak RSS per worker {s1}: {[f'{r:.0f}' for r in r1]} MB; {s2} (4x): "
                  f"{[f'{r:.0f}' for r in r2]} MB; growth {100 * (max(r2) / max(r1) - 1):+.1f}%")
        if "large" in parts:
            # Over 1.25 GB of voxels, each worker limited to 1.25 GB (Dask would end a worker above
            # 95% of it). Balls in one tile of eight, the rest empty, to keep the run short on a
            # small machine; every block still goes through reading, the model and writing.
            import dask

            shape = (32, 2048, 2048) if q else (80, 4096, 4096)
            limit = "1.25GB"
            path = write_input(work / "l.zarr", shape, seed=4, sparse=True)
            with dask.config.set({"distributed.worker.memory.pause": False,
                                  "distributed.worker.memory.target": False,
                                  "distributed.worker.memory.spill": False}):
                cl, client = cluster(2, memory_limit=limit)
                _, seconds = blockwise(path, work / "l_out.zarr", client, max(1, cores // 2),
                                       block=(16, 512, 512), halo=(1, 16, 16))
                rss = peak_rss_mb(client)
                client.close(); cl.close()
            gb = np.prod(shape) / 1e9
            print(f"larger than memory: {shape} uint8 = {gb:.2f} GB, 2 workers with memory limit {limit} each: "
                  f"completed in {seconds:.0f} s, peak RSS per worker {[f'{r:.0f}' for r in rss]} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
