"""``SuggestConfig``: what to rank and how, validated where it is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.patches import PLANES, PatchBox

SCOPES = ("slice", "stack", "planes")
SIGNALS = ("threshold", "tta", "centers")
MAX_TTA = 8
# Weights of the per-pixel signals in the combined uncertainty, from the rank correlation of
# each signal's patch score with the base model's real patch error on the benchmark
# (benchmarks/suggest_vs_random.py; docs/SUGGEST.md): TTA disagreement ranks errors best
# (Spearman 0.79); center instability is weaker on foreground error (0.28) but is the only signal
# for split/merged objects, so it keeps a small weight; distance to the threshold ranked errors
# backwards there (-0.65: the model was confidently wrong on unseen content and soft on correct
# background), so it is computed and shown but not weighted by default.
DEFAULT_WEIGHTS: Mapping[str, float] = {"threshold": 0.0, "tta": 1.0, "centers": 0.25}

@dataclass(frozen=True)
class SuggestConfig:
    """Settings of one patch suggestion.

    Attributes:
        model: registered model name (ignored when the job is given a loaded model).
        image: the image: a path (2D image or 3D stack TIFF), or an array-like (H, W) or
            (Z, Y, X) such as the app's open document (a memmap is read slice by slice).
        n: how many patches to suggest.
        patch_size: side of the square patches, pixels.
        scope: "slice" (only slice ``index`` of ``plane``), "stack" (slices of ``plane``) or
            "planes" (slices of xy, xz and yz, for isotropic volumes).
        plane: the plane of the slice shown (and of "slice"/"stack").
        index: the slice shown; its uncertainty map is returned. Default: the middle slice.
        labelled: patches already annotated (excluded).
        training_sets: training-set folders whose patches of this image are excluded (known from
            their names and ``suggestions*.csv``; see core.suggestions_file).
        image_stem: the image's name stem, to recognise its patches in ``training_sets``;
            default: the file name's stem.
        tta: test-time augmentations per slice (1..8): identity, left-right flip, up-down flip,
            rotation by 90, 180, 270 degrees, transpose, anti-transpose, in that order.
        weights: weight of each signal (threshold, tta, centers) in the combined uncertainty.
        boundary_px: thin uncertain lines (object borders, narrower than 2 x this + 1) are
            eroded away before patches are scored; 0 (default: eroding ranked errors slightly
            worse on the benchmark) keeps them.
        max_overlap: largest overlap (fraction of a patch) between two suggestions, and between a
            suggestion and a labelled patch.
        diversity: 0 = most uncertain first; 1 = spread out only (greedy k-center).
        spatial_weight: share of position (vs. encoder features) in the spread.
        stride: candidate patches every ``stride`` pixels (default half the patch size).
        max_slices: at most this many slices are analysed ("stack"/"planes"); they are spread
            evenly over the volume.
        window: slices are analysed in windows of this many pixels per side.
        max_windows_per_slice: at most this many windows per slice (chosen at random) on huge
            slices; the shown slice is analysed up to this many windows as well.
        max_candidates: most candidate patches kept in memory (the most uncertain ones).
        predict: segment each suggested patch (the pre-filled mask).
        inference: thresholds and post-processing for the predictions and signals.
        device: "auto", "cpu", "cuda", "cuda:N", "mps".
        seed: seeds slice and window sampling.
    """

    model: str
    image: Any = field(default=None, compare=False, repr=False)
    n: int = 16
    patch_size: int = 256
    scope: str = "slice"
    plane: str = "xy"
    index: int | None = None
    labelled: tuple[PatchBox, ...] = ()
    training_sets: tuple[Path, ...] = ()
    image_stem: str | None = None
    tta: int = 4
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    boundary_px: int = 0
    max_overlap: float = 0.25
    diversity: float = 0.5
    spatial_weight: float = 0.5
    stride: int | None = None
    max_slices: int = 8
    window: int = 1024
    max_windows_per_slice: int = 16
    max_candidates: int = 4000
    predict: bool = True
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    device: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "labelled", tuple(self.labelled))
        object.__setattr__(self, "training_sets", tuple(Path(p) for p in _as_list(self.training_sets)))
        object.__setattr__(self, "weights", dict(self.weights))
        if self.image is None:
            raise ConfigError("image: give the image or stack to suggest patches on.")
        _whole("n", self.n, 1)
        _whole("patch_size", self.patch_size, 16, "(256 is typical; at least 16 pixels)")
        if self.scope not in SCOPES:
            raise ConfigError(f"scope {self.scope!r}: choose one of {', '.join(SCOPES)}.")
        if self.plane not in PLANES:
            raise ConfigError(f"plane {self.plane!r}: choose one of {', '.join(PLANES)}.")
        if self.index is not None:
            _whole("index", self.index, 0)
        if not all(isinstance(b, PatchBox) for b in self.labelled):
            raise ConfigError("labelled: give core.patches.PatchBox objects.")
        _whole("tta", self.tta, 1, f"(1 to {MAX_TTA} augmentations)")
        if self.tta > MAX_TTA:
            raise ConfigError(f"tta {self.tta}: use 1 to {MAX_TTA} augmentations.")
        unknown = sorted(set(self.weights) - set(SIGNALS))
        if unknown:
            raise ConfigError(f"weights: unknown signal(s) {unknown}; known: {', '.join(SIGNALS)}.")
        if any(float(w) < 0 for w in self.weights.values()) or sum(float(w) for w in self.weights.values()) <= 0:
            raise ConfigError("weights: use non-negative weights, at least one above 0.")
        _whole("boundary_px", self.boundary_px, 0)
        for name in ("max_overlap", "diversity", "spatial_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} {value!r}: use a fraction between 0 and 1.")
        if self.stride is not None:
            _whole("stride", self.stride, 1)
        _whole("max_slices", self.max_slices, 1)
        _whole("window", self.window, 64, "(1024 is typical)")
        _whole("max_windows_per_slice", self.max_windows_per_slice, 1)
        _whole("max_candidates", self.max_candidates, 1)
        _whole("seed", self.seed, 0)
        if not isinstance(self.inference, InferenceConfig):
            raise ConfigError("inference: give an InferenceConfig.")

    @property
    def candidate_stride(self) -> int:
        return int(self.stride or max(1, self.patch_size // 2))

    def replace(self, **changes: Any) -> SuggestConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data (the image as its path, or a description of the array)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "image":
                value = str(value) if isinstance(value, (str, Path)) else f"array {tuple(getattr(value, 'shape', ()))}"
            elif f.name == "labelled":
                value = [box.to_dict() for box in value]
            elif f.name == "training_sets":
                value = [str(p) for p in value]
            elif f.name == "inference":
                value = value.to_dict()
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def _as_list(value: Any) -> Sequence[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def _whole(name: str, value: Any, minimum: int, hint: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} {value!r}: use a whole number of at least {minimum} {hint}".rstrip() + ".")
