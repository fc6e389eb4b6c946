"""Block-wise 3D inference on a Dask cluster, for volumes of any size, resumable.

``segment_blockwise(model, image, config, out_path, stop, cluster=...)`` is a generator like
``segment_volume``: it yields ``Progress`` (blocks done / total, ETA) and ``Message`` events,
checks ``stop()`` between events, and returns the OME-Zarr label path (``None`` when stopped).

1. The volume is cut into blocks (``block_size``, z, y, x) read with a halo (``halo``) around
   them. Each block is segmented on a Dask worker exactly as ``segment_volume`` segments a
   volume (``run_plane`` per plane, ortho consensus), on the whole volume's intensity scaling;
   only the block's core is kept. Its labels (block-local ids) go to a work array in the output
   folder, its object table (class, voxels, bounding box) and its face planes to a small file.
   The model is loaded once per worker thread (``_engine``'s cache, keyed by the model).
2. The driver joins objects across block faces: on each face, the labels the lower block gave
   the upper block's first plane (from its halo) are compared with the upper block's own; each
   upper piece joins its best-overlapping lower object of the same class when their IoU, or
   the share of the smaller one covered, is above 0.25 (the rule linking slices in 3D),
   union-find makes the joins transitive. Size and thickness filters are then applied to whole
   objects and ids numbered as ``segment_volume`` does (1..N for one instance class).
3. Each block's work labels are mapped to the final ids and written to the output.

Resuming: a block's state (1 segmented, 2 written) is recorded in ``empanada_work/state`` inside
the output zarr as soon as it is done; running the same job again skips finished blocks and
produces the same labels. The job's settings are stored in the output's attributes, and a
different job refuses to resume someone else's output. ``empanada_work`` is deleted at the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empanada_desktop.backend.events import Message, Progress, StopFn, never_stop
from empanada_desktop.backend.inference.cluster import ClusterConfig, connect
from empanada_desktop.backend.inference.components import overlap_table
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine3d import LINK_COVER, LINK_IOU, run_plane
from empanada_desktop.backend.inference.volume_io import ObjectStats, SliceSource, final_lookup
from empanada_desktop.core.errors import ConfigError, UserError

log = logging.getLogger(__name__)

WORK = "empanada_work"
SEGMENTED, WRITTEN = 1, 2
_CHUNK_TARGET = (32, 256, 256)


# -- settings --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """How a worker gets the model: a registered model's ``name`` (loaded from the registry on
    the worker), or a picklable ``factory() -> (model, ModelConfig)`` (tests, custom models)."""

    name: str | None = None
    factory: Callable[[], tuple] | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.name is None) == (self.factory is None):
            raise ConfigError("a ModelRef names a registered model or gives a factory, not both")

    @property
    def cache_key(self) -> str:
        if self.key:
            return self.key
        if self.name:
            return f"registered:{self.name}"
        return f"factory:{self.factory.__module__}.{getattr(self.factory, '__qualname__', repr(self.factory))}"

    def load(self, device):
        if self.name is not None:
            from empanada_desktop.backend.loading import load_registered

            return load_registered(self.name, device)
        return self.factory()

    def model_config(self):
        if self.name is not None:
            from empanada_desktop.core.errors import ModelLoadError
            from empanada_desktop.core.registry import ModelRegistry

            registered = ModelRegistry().get(self.name)
            if not registered.installed or registered.weights_path is None:
                raise ModelLoadError(
                    f"Model '{registered.name}' has no weights on this computer. {registered.missing_weights_hint}"
                )
            return registered.config
        return self.factory()[1]


@dataclass(frozen=True)
class BlockGrid:
    """Blocks of ``block`` voxels (the last ones smaller) over ``shape``, each read with ``halo``."""

    shape: tuple[int, int, int]
    block: tuple[int, int, int]
    halo: tuple[int, int, int]

    @property
    def counts(self) -> tuple[int, int, int]:
        return tuple(-(-n // b) for n, b in zip(self.shape, self.block, strict=True))

    @property
    def total(self) -> int:
        return int(np.prod(self.counts))

    def indices(self) -> list[tuple[int, int, int]]:
        return [tuple(int(i) for i in index) for index in np.ndindex(*self.counts)]

    def number(self, index) -> int:
        return int(np.ravel_multi_index(index, self.counts))

    def core(self, index) -> tuple[slice, ...]:
        return tuple(slice(i * b, min((i + 1) * b, n)) for i, b, n in zip(index, self.block, self.shape, strict=True))

    def extended(self, index) -> tuple[slice, ...]:
        return tuple(slice(max(0, c.start - h), min(n, c.stop + h))
                     for c, h, n in zip(self.core(index), self.halo, self.shape, strict=True))


def default_halo(config: InferenceConfig) -> tuple[int, int, int]:
    """Enough context for the median filter and slice linking in z, half a tile overlap in y, x."""
    z = config.median_kernel // 2 + 1
    yx = max(16, config.tile_overlap // 2)
    if config.ortho or config.plane != "xy":
        z = max(z, yx)
    return (z, yx, yx)


def default_block_size(config: InferenceConfig, halo, shape=None) -> tuple[int, int, int]:
    """64 slices; whole slices when a slice fits one model tile (then no y/x halo is needed),
    else blocks whose slices with their halo make one tile (no tiling inside a block)."""
    yx = max(256, (config.tile_size - 2 * halo[1]) // 256 * 256)
    if shape is not None and max(shape[1:]) <= config.tile_size and not config.ortho and config.plane == "xy":
        return (64, int(shape[1]), int(shape[2]))
    return (64, yx, yx)


def chunk_shape(block) -> tuple[int, int, int]:
    """Output chunks: the largest divisors of the block near 32 x 256 x 256, so that no two
    blocks ever write the same chunk (a block that has none keeps its own size)."""
    chunks = []
    for b, target in zip(block, _CHUNK_TARGET, strict=True):
        c = next((d for d in range(min(b, target), 0, -1) if b % d == 0), b)
        chunks.append(c if c * 4 >= min(b, target) else b)
    return tuple(chunks)


@dataclass(frozen=True)
class BlockwiseSettings:
    """Block geometry; None picks the defaults above."""

    block_size: tuple[int, int, int] | None = None
    halo: tuple[int, int, int] | None = None
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def resolve(self, config: InferenceConfig, shape) -> BlockGrid:
        halo = tuple(self.halo) if self.halo is not None else default_halo(config)
        block = tuple(self.block_size) if self.block_size is not None else default_block_size(config, halo, shape)
        if len(block) != 3 or len(halo) != 3 or min(block) < 1 or min(halo) < 0:
            raise ConfigError(f"block size {block} and halo {halo} must be three numbers (z, y, x), blocks >= 1")
        block = tuple(min(b, n) for b, n in zip(block, shape, strict=True))
        return BlockGrid(tuple(int(n) for n in shape), block, tuple(int(h) for h in halo))


# -- the worker side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    """What every task needs; scattered to the workers once."""

    image: object
    model: ModelRef
    config: InferenceConfig
    grid: BlockGrid
    scaling: tuple[float, float]
    out_path: str
    torch_threads: int | None
    gpus: int
    stop_name: str | None
    # uint8 image on which every worker calibrates int8 (InferenceConfig.int8), so that all
    # workers and every re-run compute with the same int8 model; None when int8 is off.
    calibration: object = None


_ENGINES: dict = {}
_ENGINES_LOCK = threading.Lock()
MODEL_LOADS = [0]  # how many times a worker process loaded a model (tests read it)


def _worker_device(job: _Job):
    import torch

    from empanada_desktop.backend.devices import resolve_device

    device = torch.device(resolve_device(job.config.device))
    if device.type == "cuda" and device.index is None and job.gpus > 1:
        try:
            from distributed import get_worker

            name = get_worker().name
            device = torch.device("cuda", int(name) % job.gpus)
        except (ValueError, TypeError):
            pass
    return device


def _engine(job: _Job):
    """The Engine2D of this worker thread for the job's model and settings (loaded once)."""
    import torch

    from empanada_desktop.backend.inference.engine2d import Engine2D

    key = (job.model.cache_key, json.dumps(job.config.to_dict(), sort_keys=True), threading.get_ident())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
    # OpenMP thread counts belong to the calling thread, and Dask starts worker processes with
    # OMP_NUM_THREADS=1: set the count in the thread that runs the blocks.
    if job.torch_threads and torch.get_num_threads() != job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    if engine is not None:
        return engine
    device = _worker_device(job)
    model, model_config = job.model.load(device)
    with _ENGINES_LOCK:
        MODEL_LOADS[0] += 1
    engine = Engine2D(model, model_config, job.config, device=device, optimize=True)
    if job.calibration is not None:
        engine.prepare(job.calibration)
    with _ENGINES_LOCK:
        _ENGINES[key] = engine
    return engine


def clear_model_cache() -> None:
    with _ENGINES_LOCK:
        _ENGINES.clear()


def _stop_checker(job: _Job) -> StopFn:
    if not job.stop_name:
        return never_stop
    from distributed import Event

    event = Event(job.stop_name)
    return event.is_set


def _release_memory() -> None:
    """Give the heap's free memory back to the OS after a block (glibc). ``tune_cpu_runtime``
    keeps freed memory in the heap for speed within a job; across hundreds of blocks that
    retention, not live data, would make a worker's RSS creep towards its memory limit."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _identity(value):
    return value


def _drain(generator):
    while True:
        try:
            next(generator)
        except StopIteration as done:
            return done.value


class _NullClock:
    def tick(self, message: str) -> None:
        return None


def _work_arrays(out_path: str):
    import zarr

    group = zarr.open_group(str(Path(out_path) / WORK), mode="r+")
    return group["local"], group["state"]


def segment_block(job: _Job, index) -> int | None:
    """Segment one block (a task); returns its number of local ids, None when stopped."""
    from empanada_desktop.backend.inference.ortho import consensus

    engine = _engine(job)
    stop = _stop_checker(job)
    grid = job.grid
    core, ext = grid.core(index), grid.extended(index)
    data = np.asarray(job.image[ext])
    source = SliceSource(data, scaling=job.scaling)
    config = job.config
    planes = ("xy", "xz", "yz") if config.ortho else (config.plane,)
    clock = _NullClock()
    works, all_stats = [], []
    for plane in planes:
        work = np.zeros(data.shape, np.int32)
        stats = _drain(run_plane(engine, source, plane, work, stop, clock))
        if stats is None:
            return None
        works.append(work)
        all_stats.append(stats)
    if config.ortho:
        stats = _drain(consensus(works, all_stats, config, stop, clock))
        if stats is None:
            return None
    else:
        stats = all_stats[0]
    labels = works[0]
    del works
    inner = tuple(slice(c.start - e.start, c.stop - e.start) for c, e in zip(core, ext, strict=True))
    core_labels = labels[inner]
    table = ObjectStats()
    table.new(stats.classes)
    for z in range(core_labels.shape[0]):
        table.add_slice(core_labels[z], "xy", z)
    origin = np.array([c.start for c in core])
    present = table.counts[: table.n + 1] > 0
    lo, hi = table.lo[: table.n + 1].copy(), table.hi[: table.n + 1].copy()
    lo[present] += origin
    hi[present] += origin
    faces = {}
    for axis in range(3):
        faces[f"first{axis}"] = np.take(core_labels, 0, axis=axis)
        faces[f"last{axis}"] = np.take(core_labels, -1, axis=axis)
        beyond = inner[axis].stop
        if beyond < labels.shape[axis]:
            plane = [s for s in inner]
            plane[axis] = beyond
            faces[f"beyond{axis}"] = labels[tuple(plane)]
    local, _ = _work_arrays(job.out_path)
    local[core] = core_labels
    folder = Path(job.out_path) / WORK / "blocks"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{grid.number(index)}.npz"
    temporary = folder / f".{grid.number(index)}.{uuid.uuid4().hex}.npz"
    np.savez(temporary, classes=np.array([0] + stats.classes, np.int64), counts=table.counts[: table.n + 1],
             lo=lo, hi=hi, **faces)
    os.replace(temporary, final)
    del labels, core_labels, data, source
    _release_memory()
    return table.n


def write_block(job: _Job, index, lut: np.ndarray, stuff_divisor: int) -> None:
    """Map one block's local ids to the final ids and write them to the output (a task).

    Slab by slab (one output chunk deep) in int32, so that this step needs a few slabs of
    memory, not several copies of the block."""
    import zarr

    core = job.grid.core(index)
    local, _ = _work_arrays(job.out_path)
    out = zarr.open_array(str(Path(job.out_path) / "0"), mode="r+")
    lut = lut.astype(np.int32)
    depth = out.chunks[0]
    for z0 in range(core[0].start, core[0].stop, depth):
        slab = (slice(z0, min(z0 + depth, core[0].stop)),) + core[1:]
        labels = np.asarray(local[slab])
        mapped = lut[np.maximum(labels, 0)]
        stuff = labels < 0
        if stuff.any():
            mapped[stuff] = -labels[stuff] * stuff_divisor
        out[slab] = mapped
    _release_memory()


# -- stitching ------------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, n: int):
        self.parent = np.arange(n + 1)

    def find(self, a: int) -> int:
        parent = self.parent
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller id stays the root: numbering follows the first block
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb

    def roots(self) -> np.ndarray:
        for a in range(len(self.parent)):
            self.find(a)
        return self.parent


def face_joins(lower_plane: np.ndarray, upper_plane: np.ndarray, lower_classes, upper_classes):
    """(lower id, upper id) pairs to join: each upper piece with its best lower object."""
    a = np.maximum(lower_plane, 0)
    b = np.maximum(upper_plane, 0)
    ia, ib, inter = overlap_table(a, b)
    if not len(inter):
        return []
    area_a = np.bincount(a.ravel(), minlength=int(ia.max()) + 1)
    area_b = np.bincount(b.ravel(), minlength=int(ib.max()) + 1)
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    cover = inter / np.minimum(area_a[ia], area_b[ib])
    ok = ((iou > LINK_IOU) | (cover > LINK_COVER)) & (lower_classes[ia] == upper_classes[ib])
    ia, ib, iou = ia[ok], ib[ok], iou[ok]
    order = np.lexsort((-iou, ib))
    first = np.ones(len(order), bool)
    first[1:] = ib[order][1:] != ib[order][:-1]
    return list(zip(ia[order][first].tolist(), ib[order][first].tolist(), strict=True))


def stitch(grid: BlockGrid, blocks: dict[int, dict], config: InferenceConfig, instance_ids: bool):
    """Per-block local ids -> final ids. Returns ({block number: lookup table}, objects kept,
    objects removed by the size filters)."""
    numbers = sorted(blocks)
    offsets, total = {}, 0
    for number in numbers:
        offsets[number] = total
        total += len(blocks[number]["classes"]) - 1
    uf = _UnionFind(total)
    for index in grid.indices():
        lower = blocks[grid.number(index)]
        for axis in range(3):
            if index[axis] + 1 >= grid.counts[axis]:
                continue
            upper_index = list(index)
            upper_index[axis] += 1
            upper = blocks[grid.number(tuple(upper_index))]
            plane = lower.get(f"beyond{axis}", lower[f"last{axis}"])
            for a, b in face_joins(plane, upper[f"first{axis}"], lower["classes"], upper["classes"]):
                uf.union(offsets[grid.number(index)] + a, offsets[grid.number(tuple(upper_index))] + b)
    classes = np.zeros(total + 1, np.int64)
    counts = np.zeros(total + 1, np.int64)
    lo = np.full((total + 1, 3), np.iinfo(np.int64).max)
    hi = np.full((total + 1, 3), -1, np.int64)
    for number in numbers:
        block, start = blocks[number], offsets[number]
        n = len(block["classes"]) - 1
        classes[start + 1 : start + n + 1] = block["classes"][1:]
        counts[start + 1 : start + n + 1] = block["counts"][1:]
        lo[start + 1 : start + n + 1] = block["lo"][1:]
        hi[start + 1 : start + n + 1] = block["hi"][1:]
    roots = uf.roots()
    unique_roots, object_of_node = np.unique(roots[1:], return_inverse=True)
    objects = ObjectStats()
    objects.new(classes[unique_roots])
    m = len(unique_roots)
    np.add.at(objects.counts, object_of_node + 1, counts[1:])
    np.minimum.at(objects.lo, object_of_node + 1, lo[1:])
    np.maximum.at(objects.hi, object_of_node + 1, hi[1:])
    real = objects.counts[: m + 1] > 0  # ids seen only in a halo have no voxels
    real[0] = False
    min_extent = min(config.min_extent, min(grid.shape))
    keep = objects.keep_mask(config.min_size, min_extent) & real
    lut = final_lookup(objects, keep, instance_ids=instance_ids, label_divisor=config.label_divisor())
    node_lut = np.concatenate([[0], lut[object_of_node + 1]])
    tables = {}
    for number in numbers:
        start, n = offsets[number], len(blocks[number]["classes"]) - 1
        tables[number] = np.concatenate([[0], node_lut[start + 1 : start + n + 1]])
    return tables, int(keep.sum()), int(real.sum() - keep.sum())


# -- the driver -----------------------------------------------------------------------------------


def _open_input(image):
    if isinstance(image, str | os.PathLike):
        from empanada_desktop.core.volumes import open_image

        return open_image(image)
    return image


def _fingerprint(image, grid: BlockGrid, model: ModelRef, config: InferenceConfig) -> dict:
    settings = config.to_dict()
    settings.pop("device", None)
    where = getattr(image, "path", None)
    return {
        "input": (str(where) + (f":{image.dataset}" if getattr(image, "dataset", None) else "")) if where else "array",
        "shape": list(grid.shape), "block_size": list(grid.block), "halo": list(grid.halo),
        "model": model.cache_key, "settings": settings,
    }


def _prepare_output(out_path: Path, image, grid: BlockGrid, fingerprint: dict):
    """Create the label zarr and its work arrays, or reopen them to resume the same job."""
    import zarr

    from empanada_desktop.core.volumes.zarr_io import create_labels, read_attributes

    chunks = chunk_shape(grid.block)
    spacing = getattr(image, "spacing", None)
    if out_path.exists():
        previous = read_attributes(out_path).get("empanada_desktop", {}).get("job")
        if previous is None:
            raise UserError(
                f"{out_path} already exists and is not block-wise labels of empanada-desktop; "
                "choose another output (to add labels to an OME-Zarr image, write to "
                f"{out_path}/labels/NAME)"
            )
        if previous != json.loads(json.dumps(fingerprint)):
            raise UserError(
                f"{out_path} already exists and holds the output of a different job (other input, "
                "model, settings or blocks); choose another output or delete it to start again"
            )
        if read_attributes(out_path)["empanada_desktop"].get("complete"):
            return None
    create_labels(out_path, grid.shape, chunks=chunks,
                  voxel_size=spacing.voxel_size if spacing else (1.0, 1.0, 1.0),
                  unit=spacing.unit if spacing else "pixel", extra_attributes={"job": fingerprint})
    work = zarr.open_group(str(out_path / WORK), mode="a", zarr_format=2)
    if "local" not in work:
        work.create_array("local", shape=grid.shape, chunks=chunks, dtype="int32", fill_value=0)
        work.create_array("state", shape=grid.counts, chunks=(1, 1, 1), dtype="uint8", fill_value=0)
    return work["state"]


def _load_block(out_path: Path, number: int) -> dict:
    with np.load(out_path / WORK / "blocks" / f"{number}.npz") as data:
        return {key: data[key] for key in data.files}


class _Rate:
    def __init__(self, done: int, total: int):
        self.start = time.perf_counter()
        self.done0 = done
        self.total = total

    def progress(self, done: int, offset: int, total: int, message: str) -> Progress:
        ran = done - self.done0
        per = (time.perf_counter() - self.start) / ran if ran > 0 else None
        eta = per * (self.total - done) if per is not None else None
        return Progress(step=offset + done, total=total, seconds_per_step=per, eta_seconds=eta, message=message)


def _run_tasks(client, function, job_future, todo, extra, stop, on_done, window) -> Iterator[int]:
    """Submit ``function(job, index, *extra(index))`` for each index, at most ``window`` at a
    time; yields after each finished task; returns False when stopped."""
    from distributed import as_completed

    pending = {}
    queue = list(todo)
    finished = as_completed()
    while queue or pending:
        if stop():
            client.cancel(list(pending))
            return False
        while queue and len(pending) < window:
            index = queue.pop(0)
            future = client.submit(function, job_future, index, *extra(index), pure=False,
                                   key=f"{function.__name__}-{uuid.uuid4().hex}")
            pending[future] = index
            finished.add(future)
        if not finished.has_ready():
            time.sleep(0.05)
            continue
        for future in finished.next_batch(block=False):
            index = pending.pop(future)
            result = future.result()  # raises the task's error here
            if result is None and function is segment_block:
                continue  # stopped on the worker
            on_done(index, result)
            yield index
    return True


def _calibration_image(slices: SliceSource, config: InferenceConfig, side: int = 1024):
    """The middle ``side`` x ``side`` pixels of the middle xy slice, uint8, for int8 calibration
    (read as one region, however large the volume); None when int8 is off."""
    if config.int8 == "off":
        return None
    z, height, width = slices.shape
    y0, x0 = max(0, (height - side) // 2), max(0, (width - side) // 2)
    region = np.asarray(slices.volume[z // 2 : z // 2 + 1, y0 : y0 + side, x0 : x0 + side])
    return SliceSource(region, scaling=(slices.low, slices.scale)).get("xy", 0)


def segment_blockwise(
    model: str | ModelRef,
    image,
    config: InferenceConfig,
    out_path,
    stop: StopFn = never_stop,
    *,
    blocks: BlockwiseSettings | None = None,
    client=None,
) -> Iterator[Progress | Message]:
    """Segment a (Z, Y, X) volume block by block on Dask into an OME-Zarr label image.

    Args:
        model: a registered model's name, or a ``ModelRef``.
        image: a path (any format ``open_image`` reads, ``file.h5:/dataset`` too), an
            ``ImageSource`` or an array-like (Z, Y, X).
        config: the same settings as ``segment_volume``.
        out_path: the ``.zarr`` to write (inside an OME-Zarr image as ``image.zarr/labels/NAME``
            for the image-label layout). An unfinished output of the same job is resumed.
        stop: checked between events and, on the workers, before every slice.
        blocks: block size, halo and cluster (``BlockwiseSettings``).
        client: an existing ``distributed.Client`` to use (then only ``blocks.cluster.threads``,
            the torch threads per worker, is used from ``blocks.cluster``).

    Returns (as the generator's value): the output path, or None when stopped (finished blocks
    are kept; the same call resumes).
    """
    blocks = blocks or BlockwiseSettings()
    model_ref = ModelRef(name=model) if isinstance(model, str) else model
    out_path = Path(out_path)
    source = _open_input(image)
    from empanada_desktop.backend.inference.volume_io import check_volume

    where = str(getattr(source, "path", "volume"))
    check_volume(source, where)
    if len(source.shape) != 3:
        raise UserError(f"{where} is a 2D image; block-wise inference is for 3D volumes")
    grid = blocks.resolve(config, source.shape)
    model_config = model_ref.model_config()
    config.check_labels_fit(model_config.labels)
    things = tuple(model_config.thing_list) if not config.semantic_only else ()
    instance_ids = len(model_config.labels) == 1 and len(things) == 1
    fingerprint = _fingerprint(source, grid, model_ref, config)
    state_array = _prepare_output(out_path, source, grid, fingerprint)
    if state_array is None:
        yield Message(f"{out_path} is already complete (same input, model and settings)")
        return out_path
    state = np.asarray(state_array[...])
    slices = SliceSource(source)
    if slices.note:
        yield Message(slices.note)
    done1 = int((state >= SEGMENTED).sum())
    done2 = int((state >= WRITTEN).sum())
    n = grid.total
    yield Message(f"{n} blocks of {grid.block} voxels (halo {grid.halo}) over {grid.shape}")
    if done1:
        yield Message(f"resuming: {done1} of {n} blocks already segmented, {done2} written")

    connection = None
    if client is None:
        connection = connect(blocks.cluster, device=config.device)
        client = connection.client
        yield Message(f"running on the {connection.description}")
    stop_name = f"empanada-stop-{uuid.uuid4().hex}"
    threads = connection.torch_threads if connection else blocks.cluster.threads
    job = _Job(source, model_ref, config, grid, (slices.low, slices.scale), str(out_path),
               threads, connection.gpus if connection else 0, stop_name, _calibration_image(slices, config))
    try:
        from distributed import Event

        stop_event = Event(stop_name, client=client)

        def stopping() -> bool:
            if stop():
                stop_event.set()
                return True
            return False

        # A task, not scattered data: a worker that dies (out of memory, a lost batch job) takes
        # scattered data with it, while the scheduler can compute a task's result again.
        job_future = client.submit(_identity, job, pure=False, key=f"blockwise-job-{uuid.uuid4().hex}")
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
        todo = [i for i in grid.indices() if state[i] < SEGMENTED]
        rate = _Rate(done1, n)
        counter = [done1]

        def segmented(index, _result) -> None:
            state_array[index] = SEGMENTED
            state[index] = SEGMENTED
            counter[0] += 1

        finished = yield from _progress(
            _run_tasks(client, segment_block, job_future, todo, lambda i: (), stopping, segmented, window),
            lambda: rate.progress(counter[0], 0, 2 * n, f"segmented {counter[0]}/{n} blocks"),
        )
        if not finished:
            yield Message(f"stopped; the {counter[0]} finished blocks are kept in {out_path}: run the "
                          "same command again to resume", level="warning")
            return None

        block_data = {grid.number(i): _load_block(out_path, grid.number(i)) for i in grid.indices()}
        tables, kept, removed = stitch(grid, block_data, config, instance_ids)
        del block_data
        if removed:
            yield Message(f"removed {removed} of {kept + removed} objects smaller than {config.min_size} voxels "
                          f"or thinner than {min(config.min_extent, min(grid.shape))} slices")
        stuff_divisor = 0 if instance_ids else config.label_divisor()
        todo = [i for i in grid.indices() if state[i] < WRITTEN]
        counter2 = [done2]
        rate2 = _Rate(done2, n)

        def written(index, _result) -> None:
            state_array[index] = WRITTEN
            counter2[0] += 1

        finished = yield from _progress(
            _run_tasks(client, write_block, job_future, todo,
                       lambda i: (tables[grid.number(i)], stuff_divisor), stopping, written, window),
            lambda: rate2.progress(counter2[0], n, 2 * n, f"writing labels {counter2[0]}/{n} blocks"),
        )
        if not finished:
            yield Message(f"stopped while writing; run the same command again to finish {out_path}",
                          level="warning")
            return None
    finally:
        if connection is not None:
            connection.close()
    _finish(out_path, kept)
    log.info("block-wise segmentation written to %s (%d objects)", out_path, kept)
    return out_path


def _progress(tasks: Iterator[int], event: Callable[[], Progress]):
    while True:
        try:
            next(tasks)
        except StopIteration as done:
            return done.value
        yield event()


def _finish(out_path: Path, objects: int) -> None:
    import zarr

    group = zarr.open_group(str(out_path), mode="r+")
    attrs = dict(group.attrs.get("empanada_desktop", {}))
    attrs.update({"complete": True, "objects": objects})
    group.attrs["empanada_desktop"] = attrs
    shutil.rmtree(out_path / WORK, ignore_errors=True)


def blocks_for(shape, block_size) -> int:
    """How many blocks ``block_size`` cuts ``shape`` into."""
    return math.prod(-(-n // b) for n, b in zip(shape, block_size, strict=True))
