"""Per-pixel uncertainty of a model on one 2D image, from its own outputs.

The image is segmented ``tta`` times, each time flipped or rotated (the dihedral group:
identity, left-right flip, up-down flip, rotations by 90, 180 and 270 degrees, transpose,
anti-transpose), and every output is turned back. Three signals, each within 0..1:

- ``threshold``: how close the mean foreground probability is to the decision threshold
  (1 at the threshold, 0 at probability 0 or 1); for multi-class models, one minus the margin
  between the two most probable classes;
- ``tta``: disagreement between the augmentations, twice the standard deviation of the
  foreground probability;
- ``centers``: unstable instance centers: around each center any view found, ``4 q (1 - q)``
  where ``q`` is the share of views with a center within a few pixels of it (0 when every
  view has it; 1 when half do: an object split or merged depending on the view).

Object borders are uncertain in every image, by a pixel or two; ``boundary_px`` erodes the
threshold and tta maps so that lines thinner than ``2 * boundary_px + 1`` pixels do not count,
and wide uncertain areas (where the model really hesitates) remain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.backend.inference.postprocess import find_centers, harden
from empanada_desktop.backend.suggest.config import SIGNALS

TRANSFORMS = ("identity", "flip_lr", "flip_ud", "rot90", "rot180", "rot270", "transpose", "antitranspose")
_INVERSE = {"rot90": "rot270", "rot270": "rot90"}


def transform(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Apply a dihedral transform to the last two dimensions."""
    if name == "identity":
        return tensor
    if name == "flip_lr":
        return torch.flip(tensor, dims=(-1,))
    if name == "flip_ud":
        return torch.flip(tensor, dims=(-2,))
    if name == "rot90":
        return torch.rot90(tensor, 1, dims=(-2, -1))
    if name == "rot180":
        return torch.rot90(tensor, 2, dims=(-2, -1))
    if name == "rot270":
        return torch.rot90(tensor, 3, dims=(-2, -1))
    if name == "transpose":
        return tensor.transpose(-2, -1)
    if name == "antitranspose":
        return torch.rot90(tensor.transpose(-2, -1), 2, dims=(-2, -1))
    raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")


def inverse(name: str) -> str:
    """The transform that undoes ``name``."""
    return _INVERSE.get(name, name)


@dataclass
class ImageUncertainty:
    """The signals of one image: (H, W) float32 numpy maps in 0..1, keyed by signal name."""

    signals: dict[str, np.ndarray]

    def combined(self, weights: Mapping[str, float]) -> np.ndarray:
        """The weighted mean of the signals (weights of absent signals are ignored)."""
        total = sum(float(weights.get(name, 0.0)) for name in self.signals)
        first = next(iter(self.signals.values()))
        out = np.zeros(first.shape, np.float32)
        if total <= 0:
            return out
        for name, values in self.signals.items():
            weight = float(weights.get(name, 0.0))
            if weight:
                out += np.float32(weight / total) * values
        return out


def _erode(values: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return values
    size = 2 * radius + 1
    return -F.max_pool2d(-values[None, None], size, stride=1, padding=radius)[0, 0]


def _center_points(engine: Engine2D, raw) -> torch.Tensor:
    """(h, w) 0/1 map of the object centers that lie on thing pixels (transformed frame)."""
    probs = raw.probs
    shape = tuple(probs.shape[-2:])
    points = torch.zeros(shape, dtype=torch.float32, device=probs.device)
    thing_list = engine.params.thing_list
    if not thing_list:
        return points
    centers, _ = find_centers(raw.ctr_hmp, engine.params.center_confidence_thr, engine.params.nms_kernel)
    if len(centers) == 0:
        return points
    cell = int(raw.cell)
    ys = (centers[:, 0] * cell + cell // 2).clamp(max=shape[0] - 1)
    xs = (centers[:, 1] * cell + cell // 2).clamp(max=shape[1] - 1)
    classes = harden(probs, engine.params.confidence_thr)
    things = torch.tensor(list(thing_list), device=classes.device)
    on_thing = torch.isin(classes[ys, xs], things)
    points[ys[on_thing], xs[on_thing]] = 1.0
    return points


def _dilate(values: torch.Tensor, radius: int) -> torch.Tensor:
    size = 2 * radius + 1
    return F.max_pool2d(values[None, None], size, stride=1, padding=radius)[0, 0]


def _center_instability(points: list[torch.Tensor], radius: int) -> torch.Tensor:
    """``4 q (1 - q)`` around each center, ``q`` = share of views with a center within ``radius``
    (a center that moves by less than ``radius`` between views is stable)."""
    count = float(len(points))
    support = torch.stack([_dilate(p, radius) for p in points]).sum(dim=0)
    instability = torch.zeros_like(support)
    for view in points:
        where = view > 0
        q = support[where] / count
        instability[where] = torch.maximum(instability[where], 4.0 * q * (1.0 - q))
    return _dilate(instability, radius)


def _writable(image: np.ndarray) -> np.ndarray:
    """A contiguous array torch may wrap (slices of a read-only memmap are copied)."""
    image = np.ascontiguousarray(image)
    return image if image.flags.writeable else image.copy()


def foreground(probs: torch.Tensor) -> torch.Tensor:
    """(C, H, W) probabilities -> (H, W) probability of any non-background class."""
    return probs[0] if probs.shape[0] == 1 else 1.0 - probs[0]


@torch.inference_mode()
def image_uncertainty(engine: Engine2D, image: np.ndarray, *, tta: int = 4, boundary_px: int = 0,
                      center_radius: int | None = None, stop=None) -> ImageUncertainty | None:
    """The three signals of a uint8 (H, W) image (see the module docstring).

    Returns None when ``stop()`` became true between two augmentations.
    """
    names = TRANSFORMS[: max(1, min(int(tta), len(TRANSFORMS)))]
    base = torch.from_numpy(_writable(image))
    sum_probs = sum_fg2 = None
    points: list[torch.Tensor] = []
    radius = center_radius
    for name in names:
        if stop is not None and stop():
            return None
        view = np.ascontiguousarray(transform(name, base).numpy())
        raw = engine.forward(view)
        if radius is None:
            radius = max(2, 2 * int(raw.cell))
        probs = transform(inverse(name), raw.probs).float()
        fg = foreground(probs)
        points.append(transform(inverse(name), _center_points(engine, raw)))
        if sum_probs is None:
            sum_probs, sum_fg2 = probs.clone(), fg * fg
        else:
            sum_probs += probs
            sum_fg2 += fg * fg
    count = float(len(names))
    mean_probs = sum_probs / count
    mean_fg = foreground(mean_probs)
    if mean_probs.shape[0] == 1:
        thr = float(engine.params.confidence_thr)
        threshold = 1.0 - (mean_fg - thr).abs() / max(thr, 1.0 - thr)
    else:
        top2 = torch.topk(mean_probs, 2, dim=0).values
        threshold = 1.0 - (top2[0] - top2[1])
    variance = (sum_fg2 / count - mean_fg * mean_fg).clamp(min=0.0)
    disagreement = (2.0 * variance.sqrt()).clamp(max=1.0)
    centers = _center_instability(points, radius)
    maps = {
        "threshold": _erode(threshold.clamp(0.0, 1.0), boundary_px),
        "tta": _erode(disagreement, boundary_px),
        "centers": centers,
    }
    return ImageUncertainty({name: maps[name].float().cpu().numpy() for name in SIGNALS})


@torch.inference_mode()
def encoder_features(engine: Engine2D, image: np.ndarray) -> tuple[torch.Tensor, int] | None:
    """The model encoder's deepest feature map of a uint8 image: ``((C, h, w) on the CPU, stride)``.

    None when the model has no callable ``encoder`` returning a list of feature maps (then the
    suggestions are spread by position only).
    """
    encoder = getattr(engine.model, "encoder", None)
    if encoder is None or not callable(encoder):
        return None
    x = torch.from_numpy(_writable(image)).to(engine.device).float()
    x = (x / 255.0 - engine.mean) / engine.std
    multiple = engine.padding_factor
    x = F.pad(x[None, None], (0, -x.shape[1] % multiple, 0, -x.shape[0] % multiple))
    try:
        features = encoder(x)
    except (RuntimeError, TypeError):
        return None
    if isinstance(features, (list, tuple)):
        features = features[-1] if features else None
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        return None
    stride = max(1, int(round(x.shape[-1] / features.shape[-1])))
    return features[0].float().cpu(), stride
