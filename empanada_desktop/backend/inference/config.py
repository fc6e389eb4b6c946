"""Inference settings: one frozen dataclass, validated with messages a biologist understands.

Defaults follow empanada-napari's inference widgets (segmentation confidence 0.5, center
confidence 0.1, centers minimum distance 3, no downsampling, coarse boundaries, 100000 maximum
objects per class). As in empanada-napari, the maximum number of objects per class is also the
label divisor of the output: ``id = class * max_objects + instance``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from empanada_desktop.core.errors import ConfigError

PLANES = ("xy", "xz", "yz")
DOWNSAMPLE_CHOICES = (1, 2, 4, 8, 16)
INT8_CHOICES = ("auto", "on", "off")  # the same as backend/inference/int8.py, which imports torch
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class InferenceConfig:
    """How to segment an image or a volume.

    Attributes:
        confidence_thr: a pixel is foreground when its probability is at least this (binary
            models; multi-class models take the most probable class).
        center_confidence_thr: center heatmap values at or below this are not object centers.
        nms_kernel: centers closer than about this many pixels (of the 1/4-resolution center map)
            are merged: the size of the max-pool window ("centers minimum distance").
        downsample: shrink the image by this factor before the model (faster, for large
            objects); the semantic mask is rendered back to full size by PointRend.
        fine_boundaries: group pixels to centers at full instead of 1/4 resolution (smoother
            borders between touching objects, 16x the grouping work).
        semantic_only: no instances: every class is returned as one region per class.
        max_objects: maximum objects per class, also the label divisor of the output ids.
        tile_size: images larger than this (pixels per side) are segmented in overlapping tiles.
        tile_overlap: overlap between neighbouring tiles in pixels.
        device: "auto", "cpu", "cuda", "cuda:1", "mps".
        plane: for stacks, the plane of the slices: "xy", "xz" or "yz".
        median_kernel: for stacks, median filter of the semantic probabilities over this many
            neighbouring slices (odd; 1 = off).
        min_size: for stacks, objects with fewer voxels are removed.
        min_extent: for stacks, objects whose bounding box is thinner than this along any axis
            are removed.
        ortho: for stacks, segment along xy, xz and yz and keep voxels on which ``vote_thr`` of
            the three agree.
        vote_thr: 1, 2 or 3 (of 3 planes).
        allow_one_view: in ortho mode, also keep objects that only one plane found.
        int8: on the CPU, run the model in 8-bit integers, calibrated on the image and checked
            against float32 (backend/inference/int8.py): "auto" (when it pays: stacks, large
            images, or a model already calibrated in this session), "on", or "off".
    """

    confidence_thr: float = 0.5
    center_confidence_thr: float = 0.1
    nms_kernel: int = 3
    downsample: int = 1
    fine_boundaries: bool = False
    semantic_only: bool = False
    max_objects: int = 100_000
    tile_size: int = 2048
    tile_overlap: int = 128
    device: str = "auto"
    plane: str = "xy"
    median_kernel: int = 3
    min_size: int = 500
    min_extent: int = 4
    ortho: bool = False
    vote_thr: int = 2
    allow_one_view: bool = False
    int8: str = "auto"

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence_thr < 1.0:
            raise ConfigError(
                f"confidence_thr is {self.confidence_thr}: choose a segmentation confidence "
                "between 0 and 1 (0.5 is usual; lower finds more, fainter objects)"
            )
        if not 0.0 <= self.center_confidence_thr < 1.0:
            raise ConfigError(
                f"center_confidence_thr is {self.center_confidence_thr}: choose a value "
                "between 0 and 1 (0.1 is usual)"
            )
        if not 1 <= self.nms_kernel <= 63:
            raise ConfigError(
                f"nms_kernel (centers minimum distance) is {self.nms_kernel}: choose 1 to 63 "
                "(3 is usual; larger merges nearby objects)"
            )
        if self.downsample not in DOWNSAMPLE_CHOICES:
            raise ConfigError(
                f"downsample is {self.downsample}: choose one of {list(DOWNSAMPLE_CHOICES)}"
            )
        if self.max_objects < 1:
            raise ConfigError(f"max_objects is {self.max_objects}: it must be at least 1")
        if self.tile_size < 64:
            raise ConfigError(f"tile_size is {self.tile_size}: use at least 64 pixels")
        if not 0 <= self.tile_overlap < self.tile_size // 2:
            raise ConfigError(
                f"tile_overlap is {self.tile_overlap}: it must be at least 0 and less than half "
                f"the tile size ({self.tile_size // 2})"
            )
        if self.plane not in PLANES:
            raise ConfigError(f"plane is {self.plane!r}: choose one of {', '.join(PLANES)}")
        if self.median_kernel < 1 or self.median_kernel % 2 == 0:
            raise ConfigError(
                f"median_kernel is {self.median_kernel}: use an odd number of slices (1 = off, "
                "3 or 5 usual)"
            )
        if self.min_size < 0 or self.min_extent < 0:
            raise ConfigError("min_size and min_extent cannot be negative")
        if self.int8 not in INT8_CHOICES:
            raise ConfigError(f"int8 is {self.int8!r}: choose one of {', '.join(INT8_CHOICES)}")
        if self.vote_thr not in (1, 2, 3):
            raise ConfigError(f"vote_thr is {self.vote_thr}: choose 1, 2 or 3 (of 3 planes)")

    def label_divisor(self) -> int:
        return self.max_objects

    def check_labels_fit(self, labels) -> None:
        """Raise ConfigError when ``class * max_objects + instance`` would not fit in int32."""
        top = max(labels, default=1)
        if (top + 1) * self.max_objects > INT32_MAX:
            raise ConfigError(
                f"max_objects {self.max_objects} is too large for class ids up to {top}: the "
                f"output ids would not fit a 32-bit label image; use at most "
                f"{INT32_MAX // (top + 1)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InferenceConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown inference settings {unknown}; known: {sorted(known)}")
        return cls(**data)
