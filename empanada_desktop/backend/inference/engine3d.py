"""3D inference: segment a stack slice by slice and link the slices into 3D objects.

``segment_volume(model, volume, config, out_path, stop)`` is a generator (docs/ARCHITECTURE.md): it
yields ``Progress`` per slice and ``Message`` notes, checks ``stop()`` before every slice and
returns the path of the int32 label TIFF (``None`` when stopped; nothing is left behind).

Per plane (xy, xz or yz): the 2D engine's raw outputs of each slice enter a rolling buffer of
``median_kernel`` slices; the semantic probabilities of the middle slice are replaced by their
median over the buffer, then post-processed. As in empanada-napari, the filtered probabilities
replace the slice's own in the buffer, so the next window sees them (a recursive median), and
the first and last ``median_kernel // 2`` slices, which have no full window, stay unfiltered;
matching it keeps our stacks in agreement with empanada's on the same weights. The 2D
instances (connected pieces) are linked to the objects of the previous slice: a piece joins the
same-class object it overlaps with the highest IoU when that IoU, or the share of the smaller
of the two covered by the other, is above 0.25; else it starts a new object. Objects smaller
than ``min_size`` voxels or thinner than ``min_extent`` along any axis are dropped at the end.

Output ids: for a model with one instance class, objects are numbered 1..N (as empanada's stack
inference); otherwise ``class * max_objects + k`` (stuff: ``class * max_objects``).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from empanada_desktop.backend.events import Message, Progress, StopFn, never_stop
from empanada_desktop.backend.inference.components import connected_components, overlap_table
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine2d import Engine2D, RawOutput
from empanada_desktop.backend.inference.volume_io import (
    ObjectStats,
    SliceSource,
    check_volume,
    final_lookup,
    put_slice,
    work_file,
    write_output,
)
from empanada_desktop.core.disk_space import ensure_free_space

log = logging.getLogger(__name__)

LINK_IOU = 0.25
LINK_COVER = 0.25


class _Clock:
    """Counts finished steps over all phases and estimates the time left."""

    def __init__(self, total: int):
        self.total = total
        self.step = 0
        self.start = time.perf_counter()

    def tick(self, message: str) -> Progress:
        self.step += 1
        per_step = (time.perf_counter() - self.start) / self.step
        return Progress(
            step=self.step, total=self.total, seconds_per_step=per_step,
            eta_seconds=per_step * (self.total - self.step), message=message,
        )


def link_pieces(
    pieces: np.ndarray, piece_class: np.ndarray, previous: np.ndarray, stats: ObjectStats
) -> np.ndarray:
    """3D object id for each 2D piece (1..m) given the previous slice's object ids.

    Returns an array ``ids`` of length m + 1 (``ids[0] == 0``); new objects are allocated in
    ``stats``.
    """
    m = len(piece_class) - 1
    ids = np.zeros(m + 1, np.int64)
    if m == 0:
        return ids
    prev_pos = np.where(previous > 0, previous, 0)
    ia, ib, inter = overlap_table(pieces, prev_pos)
    if len(inter):
        piece_area = np.bincount(pieces.ravel(), minlength=m + 1)
        area_b = np.bincount(prev_pos.ravel(), minlength=int(ib.max()) + 1)[ib]
        iou = inter / (piece_area[ia] + area_b - inter)
        cover = inter / np.minimum(piece_area[ia], area_b)
        object_class = np.asarray([0] + stats.classes)
        ok = ((iou > LINK_IOU) | (cover > LINK_COVER)) & (object_class[ib] == piece_class[ia])
        ia, ib, iou = ia[ok], ib[ok], iou[ok]
        order = np.lexsort((-iou, ia))  # per piece, best IoU first
        first = np.ones(len(order), bool)
        first[1:] = ia[order][1:] != ia[order][:-1]
        ids[ia[order][first]] = ib[order][first]
    new = np.flatnonzero(ids[1:] == 0) + 1
    if len(new):
        ids[new] = stats.new(piece_class[new])
    return ids


def _slice_labels(engine: Engine2D, raw: RawOutput, previous: np.ndarray | None, stats: ObjectStats):
    """Post-process one slice and link it: work-encoded labels (ids > 0, -class stuff)."""
    classes, instances = engine.postprocess(raw)
    pieces, _ = connected_components(instances)
    m = int(pieces.max(initial=0))
    piece_class = np.zeros(m + 1, np.int64)
    inside = pieces > 0
    piece_class[pieces[inside]] = classes[inside]
    if previous is None:
        previous = np.zeros_like(pieces)
    ids = link_pieces(pieces, piece_class, previous, stats)
    labels = np.where(inside, ids[pieces], -classes.astype(np.int64))
    return labels.astype(np.int32)


def run_plane(
    engine: Engine2D, source: SliceSource, plane: str, work: np.ndarray, stop: StopFn, clock: _Clock
) -> Iterator[Progress]:
    """Segment every slice along ``plane`` into ``work``; returns ObjectStats (None if stopped)."""
    stats = ObjectStats()
    half = engine.config.median_kernel // 2
    n = source.count(plane)
    buffer: deque[tuple[int, RawOutput]] = deque()
    previous = None

    def emit(index: int):
        nonlocal previous
        position = next(p for p, (i, _) in enumerate(buffer) if i == index)
        raw = buffer[position][1]
        if half > 0 and half <= index < n - half:  # a full window: filter (see module docstring)
            window = [r for i, r in buffer if abs(i - index) <= half]
            with torch.inference_mode():
                probs = torch.stack([r.probs for r in window]).median(dim=0).values
            raw = RawOutput(probs, raw.ctr_hmp, raw.offsets, raw.cell, raw.unit)
            buffer[position] = (index, raw)
        labels = _slice_labels(engine, raw, previous, stats)
        put_slice(work, plane, index, labels)
        stats.add_slice(labels, plane, index)
        previous = labels
        while buffer and buffer[0][0] < index + 1 - half:
            buffer.popleft()

    for i in range(n):
        if stop():
            return None
        buffer.append((i, engine.forward(source.get(plane, i))))
        if i - half >= 0:
            emit(i - half)
        yield clock.tick(f"{plane} slice {i + 1}/{n}")
    for index in range(max(0, n - half), n):
        emit(index)
    return stats


def _load(model_or_name, model_config, device):
    if isinstance(model_or_name, str):
        from empanada_desktop.backend.loading import load_registered

        return load_registered(model_or_name, device)
    if model_config is None:
        raise TypeError("segment_volume needs model_config when given a model object")
    return model_or_name, model_config


def segment_volume(
    model_name_or_model,
    volume,
    config: InferenceConfig,
    out_path,
    stop: StopFn = never_stop,
    *,
    model_config=None,
    device=None,
) -> Iterator[Progress | Message]:
    """Segment a (Z, Y, X) volume (array-like or path) into an int32 label TIFF at ``out_path``.

    Args:
        model_name_or_model: a registered model's name, or a loaded model (then give
            ``model_config``).
        volume: array-like (Z, Y, X), e.g. a memory-mapped TIFF, or a path to one.
        config: settings; ``plane``, ``median_kernel``, ``min_size``, ``min_extent``, ``ortho``,
            ``vote_thr``, ``allow_one_view`` are the 3D ones.
        out_path: where the label TIFF goes (written atomically).
        stop: checked before every slice; when it returns True the job ends and returns None.
        device: a torch device; by default ``config.device`` resolved.

    Returns (as the generator's value): the output path, or None when stopped.
    """
    out_path = Path(out_path)
    if isinstance(volume, str | Path):
        from empanada_desktop.core.volumes.opening import open_volume

        where = str(volume)
        volume = open_volume(volume)
    else:
        where = "volume"
    volume = check_volume(volume, where)
    if device is None:
        from empanada_desktop.backend.devices import resolve_device

        device = resolve_device(config.device)
    model, model_config = _load(model_name_or_model, model_config, device)
    engine = Engine2D(model, model_config, config, device=device, optimize=True)
    source = SliceSource(volume)
    if source.note:
        yield Message(source.note)
    # float32 or int8 (InferenceConfig.int8), calibrated on the middle slice of the first plane.
    yield Message(f"model precision: {engine.prepare(source.get(config.plane, source.count(config.plane) // 2))}")
    planes = ("xy", "xz", "yz") if config.ortho else (config.plane,)
    clock = _Clock(sum(source.count(p) for p in planes) + source.shape[0] * (3 if config.ortho else 1))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Work files (one per plane, int32) and the output TIFF, before any slice is segmented.
    ensure_free_space(out_path.parent, 4 * int(np.prod(source.shape)) * (len(planes) + 1), f"the labels {out_path.name}")
    with tempfile.TemporaryDirectory(prefix=".empanada-work-", dir=out_path.parent) as folder:
        works, all_stats = [], []
        for plane in planes:
            work = work_file(Path(folder), plane, source.shape)
            stats = yield from run_plane(engine, source, plane, work, stop, clock)
            if stats is None:
                yield Message("stopped; no output written", level="warning")
                return None
            works.append(work)
            all_stats.append(stats)
        if config.ortho:
            from empanada_desktop.backend.inference.ortho import consensus

            stats = yield from consensus(works, all_stats, config, stop, clock)
            if stats is None:
                yield Message("stopped; no output written", level="warning")
                return None
        work, stats = works[0], (stats if config.ortho else all_stats[0])
        min_extent = min(config.min_extent, min(source.shape))
        keep = stats.keep_mask(config.min_size, min_extent)
        dropped = stats.n - int(keep.sum())
        if dropped:
            yield Message(
                f"removed {dropped} of {stats.n} objects smaller than {config.min_size} voxels "
                f"or thinner than {min_extent} slices"
            )
        things = tuple(model_config.thing_list) if not config.semantic_only else ()
        instance_ids = len(model_config.labels) == 1 and len(things) == 1
        lut = final_lookup(stats, keep, instance_ids=instance_ids, label_divisor=config.label_divisor())
        writer = write_output(out_path, work, lut, 0 if instance_ids else config.label_divisor())
        while True:
            if stop():
                writer.close()
                yield Message("stopped; no output written", level="warning")
                return None
            try:
                z = next(writer)
            except StopIteration:
                break
            yield clock.tick(f"writing slice {z + 1}/{source.shape[0]}")
        del works, work
    log.info("3D segmentation written to %s (%d objects)", out_path, int(keep.sum()))
    return out_path
