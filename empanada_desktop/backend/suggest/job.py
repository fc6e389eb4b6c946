"""``suggest_patches(config, stop) -> Iterator[Event]``: where to annotate next.

1. Slices are chosen: the shown slice, plus for "stack"/"planes" up to ``max_slices`` slices
   spread evenly (with a seeded jitter) over the volume.
2. Each slice is analysed in windows (at most ``max_windows_per_slice``, picked at random on
   huge slices): the per-pixel uncertainty signals (``uncertainty.py``) and the encoder's
   features. Every candidate patch (a grid every ``stride`` pixels) gets the mean uncertainty
   over its box and its pooled, randomly projected encoder features. Only the candidates (and
   the maps of the shown slice) are kept, at most ``max_candidates`` of them: memory stays
   bounded whatever the volume's size.
3. ``core.suggest_ranking.rank_patches`` picks ``n``: uncertain, spread out, not overlapping
   each other or the labelled patches.
4. Each pick is cut from its slice and segmented with some context around it: the prediction
   the user starts annotating from.

Yields ``Progress`` (one step per window, then per predicted patch) and ``Message`` events and
returns a :class:`SuggestResult`. ``stop()`` is checked between augmentations and windows;
a stopped job returns ``SuggestResult(stopped=True)`` without patches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from empanada_desktop.backend.events import Event, Message, Progress, StopFn, never_stop
from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.backend.inference.volume_io import SliceSource, check_volume
from empanada_desktop.backend.runtime import tune_cpu_runtime
from empanada_desktop.backend.suggest.config import SIGNALS, SuggestConfig
from empanada_desktop.backend.suggest.uncertainty import encoder_features, image_uncertainty
from empanada_desktop.core.errors import ConfigError, ImageReadError
from empanada_desktop.core.labels import relabel_sequential
from empanada_desktop.core.patches import PatchBox, plane_shape
from empanada_desktop.core.suggest_ranking import Candidate, box_origin_zyx, grid_positions, rank_patches, window_means
from empanada_desktop.core.suggestions_file import labelled_boxes

log = logging.getLogger(__name__)

FEATURE_DIMS = 64  # encoder features are randomly projected to this many dimensions
MAX_MAP_PIXELS = 4096 * 4096  # larger shown slices get a subsampled uncertainty map


@dataclass(frozen=True, eq=False)
class SuggestedPatch:
    """One suggestion.

    Attributes:
        box: plane, slice index, top-left row/col in that slice, size.
        rank: 1 = annotate first.
        score: its combined uncertainty (mean over the box, 0..1).
        signals: mean of each signal over the box.
        image: (size, size) uint8 pixels of the patch.
        labels: (size, size) int32 prediction of the model (instances 1..N for single-class
            models, ``class * label_divisor + instance`` for multi-class ones); None when the
            job was asked not to predict.
    """

    box: PatchBox
    rank: int
    score: float
    signals: Mapping[str, float]
    image: np.ndarray
    labels: np.ndarray | None

    @property
    def zyx(self) -> tuple[int, int, int]:
        """The top-left voxel of the patch in the (Z, Y, X) volume."""
        return box_origin_zyx(self.box)


@dataclass(frozen=True, eq=False)
class SuggestResult:
    """What ``suggest_patches`` found.

    Attributes:
        patches: the suggestions, best first.
        plane, index: the shown slice, the one the maps below belong to.
        uncertainty: (rows, cols) float32 combined uncertainty of the shown slice (0..1; 0 where
            not analysed); subsampled by ``map_step`` for slices above 4096 x 4096 pixels.
        signal_maps: each signal's map of the shown slice, same shape.
        map_step: 1, or the subsampling of the maps.
        volume_shape: (Z, Y, X) of the image (Z = 1 for a 2D image).
        analysed: the (plane, index) slices that were analysed.
        candidates: how many candidate patches were scored.
        excluded: how many labelled patches were taken into account.
        stopped: the job was stopped before it finished (then ``patches`` is empty).
        seconds: how long it took.
    """

    patches: tuple[SuggestedPatch, ...] = ()
    plane: str = "xy"
    index: int = 0
    uncertainty: np.ndarray | None = None
    signal_maps: Mapping[str, np.ndarray] = field(default_factory=dict)
    map_step: int = 1
    volume_shape: tuple[int, int, int] = (0, 0, 0)
    analysed: tuple[tuple[str, int], ...] = ()
    candidates: int = 0
    excluded: int = 0
    stopped: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class Window:
    row: int
    col: int
    height: int
    width: int


def plan_windows(rows: int, cols: int, window: int, patch: int) -> list[Window]:
    """Windows covering a slice, overlapping by one patch so that every patch position lies
    wholly inside at least one window."""
    window = max(window, patch)
    ys = [0] if rows <= window else grid_positions(rows, window, window - patch)
    xs = [0] if cols <= window else grid_positions(cols, window, window - patch)
    return [Window(y, x, min(window, rows), min(window, cols)) for y in ys for x in xs]


def pick_slices(config: SuggestConfig, shape3d: tuple[int, int, int], rng: np.random.Generator) -> list[tuple[str, int]]:
    """The (plane, index) slices to analyse: the shown one first, then up to ``max_slices``
    spread evenly over the chosen planes."""
    shown = (config.plane, _shown_index(config, shape3d))
    if config.scope == "slice":
        return [shown]
    planes = (config.plane,) if config.scope == "stack" else ("xy", "xz", "yz")
    planes = tuple(p for p in planes if min(plane_shape(shape3d, p)[1:]) >= config.patch_size) or (config.plane,)
    per_plane = max(1, config.max_slices // len(planes))
    chosen = [shown]
    for plane in planes:
        count = plane_shape(shape3d, plane)[0]
        if count <= per_plane:
            picks = range(count)
        else:
            step = count / per_plane
            picks = sorted({int(min(count - 1, (k + rng.random()) * step)) for k in range(per_plane)})
        for index in picks:
            if (plane, int(index)) not in chosen:
                chosen.append((plane, int(index)))
    return chosen[: max(config.max_slices, 1)]


def _shown_index(config: SuggestConfig, shape3d) -> int:
    count = plane_shape(shape3d, config.plane)[0]
    index = count // 2 if config.index is None else int(config.index)
    if index >= count:
        raise ConfigError(f"index {index}: the {config.plane} plane has slices 0..{count - 1}.")
    return index


def open_volume(image) -> tuple[object, str]:
    """A (Z, Y, X) array-like and the image's name stem, from a path or an array."""
    if isinstance(image, (str, Path)):
        from empanada_desktop.core.imageio import read_image

        path = Path(image)
        volume = read_image(path, mmap=True)
        stem = path.name.split(".")[0] if path.name.lower().endswith((".ome.tif", ".ome.tiff")) else path.stem
        return check_volume(volume, str(path)), stem
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        raise ImageReadError("image: give a path or a numpy array (2D image or 3D stack).")
    return check_volume(image, "image"), "image"


def _projection(channels: int) -> torch.Tensor | None:
    if channels <= FEATURE_DIMS:
        return None
    generator = torch.Generator().manual_seed(1234)
    return torch.randn(channels, FEATURE_DIMS, generator=generator) / math.sqrt(FEATURE_DIMS)


def _pooled(features, box_rows, box_cols, size, projections: dict) -> np.ndarray | None:
    """(rows, cols) boxes in window coordinates -> unit feature vectors, or None."""
    if features is None:
        return None
    fmap, stride = features
    vectors = []
    for r in box_rows:
        for c in box_cols:
            r0, c0 = r // stride, c // stride
            r1 = max(r0 + 1, -(-(r + size) // stride))
            c1 = max(c0 + 1, -(-(c + size) // stride))
            vectors.append(fmap[:, r0:r1, c0:c1].mean(dim=(1, 2)))
    stacked = torch.stack(vectors)
    channels = stacked.shape[1]
    if channels not in projections:
        projections[channels] = _projection(channels)
    if projections[channels] is not None:
        stacked = stacked @ projections[channels]
    stacked = stacked / stacked.norm(dim=1, keepdim=True).clamp(min=1e-12)
    return stacked.numpy().astype(np.float32)


def _paste(target: np.ndarray, values: np.ndarray, row: int, col: int, step: int) -> None:
    if step == 1:
        target[row : row + values.shape[0], col : col + values.shape[1]] = values
        return
    dy, dx = (-row) % step, (-col) % step
    sub = values[dy::step, dx::step]
    r0, c0 = (row + dy) // step, (col + dx) // step
    sub = sub[: target.shape[0] - r0, : target.shape[1] - c0]
    target[r0 : r0 + sub.shape[0], c0 : c0 + sub.shape[1]] = sub


def training_mask(labels: np.ndarray, model_config, label_divisor: int) -> np.ndarray:
    """Engine output (``class * label_divisor + k``) -> a training mask: instances 1..N for a
    single-class model, ``class * engine_params.label_divisor + k`` for multi-class models."""
    labels = np.asarray(labels)
    if len(tuple(model_config.labels)) <= 1:
        return relabel_sequential(labels)[0]
    divisor = int(model_config.engine_params.label_divisor)
    classes, instances = labels // label_divisor, labels % label_divisor
    return np.where(labels > 0, classes * divisor + instances, 0).astype(np.int32)


def suggest_patches(config: SuggestConfig, stop: StopFn = never_stop, *, model=None,
                    model_config=None) -> Iterator[Event]:
    """Rank patches of ``config.image`` by the model's uncertainty; see the module docstring.

    Args:
        config: the settings.
        stop: returns True to stop early.
        model, model_config: an already loaded model (else ``config.model`` is loaded).

    Raises:
        UserError: unreadable image, unknown model, a patch larger than the image, ...
    """
    started = time.perf_counter()
    tune_cpu_runtime()
    volume, stem = open_volume(config.image)
    stem = config.image_stem or stem
    source = SliceSource(volume)
    if source.note:
        yield Message(source.note)
    shape3d = tuple(int(v) for v in source.shape)
    shown = (config.plane, _shown_index(config, shape3d))
    _, shown_rows, shown_cols = plane_shape(shape3d, config.plane)
    if config.patch_size > min(shown_rows, shown_cols):
        raise ConfigError(
            f"patch size {config.patch_size} is larger than the {config.plane} slices "
            f"({shown_rows} x {shown_cols}); choose a patch size of at most {min(shown_rows, shown_cols)}."
        )
    from empanada_desktop.backend.devices import resolve_device

    device = resolve_device(config.device)
    if model is None:
        from empanada_desktop.backend.loading import load_registered

        model, model_config = load_registered(config.model, device)
    elif model_config is None:
        raise ConfigError("a loaded model needs its model_config too")
    inference = config.inference
    if inference.device != str(device):
        inference = type(inference).from_dict(inference.to_dict() | {"device": str(device)})
    engine = Engine2D(model, model_config, inference, device)

    labelled = list(config.labelled)
    if config.training_sets:
        labelled.extend(labelled_boxes(config.training_sets, stem))
    if labelled:
        yield Message(f"{len(labelled)} labelled patch(es) of {stem} are excluded.")

    rng = np.random.default_rng(config.seed)
    slices = pick_slices(config, shape3d, rng)
    plan = []
    for plane, index in slices:
        _, rows, cols = plane_shape(shape3d, plane)
        if min(rows, cols) < config.patch_size:
            continue
        windows = plan_windows(rows, cols, config.window, config.patch_size)
        if len(windows) > config.max_windows_per_slice:
            keep = rng.choice(len(windows), config.max_windows_per_slice, replace=False)
            windows = [windows[i] for i in sorted(keep)]
        plan.append((plane, index, rows, cols, windows))
    total = sum(len(w) for *_, w in plan) + (config.n if config.predict else 0)

    map_step = max(1, math.ceil(math.sqrt(shown_rows * shown_cols / MAX_MAP_PIXELS)))
    map_shape = (-(-shown_rows // map_step), -(-shown_cols // map_step))
    shown_maps = {name: np.zeros(map_shape, np.float32) for name in ("combined", *SIGNALS)}

    size, stride = config.patch_size, config.candidate_stride
    candidates: list[Candidate] = []
    seen: set[tuple[str, int, int, int]] = set()
    projections: dict = {}
    step = 0
    stopped_result = SuggestResult(plane=shown[0], index=shown[1], volume_shape=shape3d, stopped=True)
    for plane, index, rows, cols, windows in plan:
        slice_image = source.get(plane, index)
        global_rows = grid_positions(rows, size, stride)
        global_cols = grid_positions(cols, size, stride)
        for window in windows:
            if stop():
                return stopped_result
            crop = slice_image[window.row : window.row + window.height, window.col : window.col + window.width]
            maps = image_uncertainty(engine, crop, tta=config.tta, boundary_px=config.boundary_px, stop=stop)
            if maps is None:
                return stopped_result
            combined = maps.combined(config.weights)
            if (plane, index) == shown:
                for name, values in (("combined", combined), *maps.signals.items()):
                    _paste(shown_maps[name], values, window.row, window.col, map_step)
            local_rows = [r - window.row for r in global_rows
                          if window.row <= r and r + size <= window.row + window.height]
            local_cols = [c - window.col for c in global_cols
                          if window.col <= c and c + size <= window.col + window.width]
            if local_rows and local_cols:
                features = encoder_features(engine, crop)
                vectors = _pooled(features, local_rows, local_cols, size, projections)
                scores = window_means(combined, size, local_rows, local_cols)
                signal_scores = {name: window_means(values, size, local_rows, local_cols)
                                 for name, values in maps.signals.items()}
                k = 0
                for i, r in enumerate(local_rows):
                    for j, c in enumerate(local_cols):
                        key = (plane, index, r + window.row, c + window.col)
                        if key not in seen:
                            seen.add(key)
                            candidates.append(Candidate(
                                PatchBox(plane, index, key[2], key[3], size), float(scores[i, j]),
                                None if vectors is None else vectors[k],
                                {name: float(v[i, j]) for name, v in signal_scores.items()},
                            ))
                        k += 1
            if len(candidates) > 2 * config.max_candidates:
                candidates.sort(key=lambda cand: -cand.score)
                del candidates[config.max_candidates:]
            step += 1
            yield Progress(step=step, total=total, message=f"analysed {plane} slice {index}")
    if len(candidates) > config.max_candidates:
        candidates.sort(key=lambda cand: -cand.score)
        del candidates[config.max_candidates:]
    order = rank_patches(candidates, config.n, labelled=labelled, max_overlap=config.max_overlap,
                         diversity=config.diversity, spatial_weight=config.spatial_weight)
    if len(order) < config.n:
        yield Message(
            f"Only {len(order)} of {config.n} patches fit without overlapping each other or the "
            "labelled patches by more than the allowed share.", level="warning",
        )
    patches = []
    slice_cache: dict[tuple[str, int], np.ndarray] = {}
    for rank, candidate_index in enumerate(order, start=1):
        if stop():
            return stopped_result
        candidate = candidates[candidate_index]
        box = candidate.box
        key = (box.plane, box.index)
        if key not in slice_cache:
            slice_cache = {key: source.get(*key)}  # one slice at a time in memory
        slice_image = slice_cache[key]
        image = np.ascontiguousarray(slice_image[box.row : box.row + box.size, box.col : box.col + box.size])
        labels = None
        if config.predict:
            labels = _predict(engine, slice_image, box, model_config)
            step += 1
            yield Progress(step=step, total=total, message=f"predicted patch {rank}")
        patches.append(SuggestedPatch(box, rank, candidate.score, dict(candidate.signals), image, labels))
    return SuggestResult(
        patches=tuple(patches),
        plane=shown[0],
        index=shown[1],
        uncertainty=shown_maps.pop("combined"),
        signal_maps=shown_maps,
        map_step=map_step,
        volume_shape=shape3d,
        analysed=tuple((plane, index) for plane, index, *_ in plan),
        candidates=len(seen),
        excluded=len(labelled),
        seconds=time.perf_counter() - started,
    )


def _predict(engine: Engine2D, slice_image: np.ndarray, box: PatchBox, model_config) -> np.ndarray:
    """The model's labels of a patch, segmented with a margin of context around it."""
    margin = max(16, box.size // 4)
    r0, c0 = max(0, box.row - margin), max(0, box.col - margin)
    r1 = min(slice_image.shape[0], box.row + box.size + margin)
    c1 = min(slice_image.shape[1], box.col + box.size + margin)
    labels = engine.segment(np.ascontiguousarray(slice_image[r0:r1, c0:c1]))
    inner = labels[box.row - r0 : box.row - r0 + box.size, box.col - c0 : box.col - c0 + box.size]
    return training_mask(inner, model_config, engine.label_divisor)
