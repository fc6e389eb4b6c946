"""Synthetic EM-like scenes for the suggestion benchmark: normal cells, and a novel region.

The "normal" style is the demo data's (``resources/demo/make_demo.py``): mid-gray granular
cytoplasm, dark membranes, mitochondria with a dark matrix, a dark double border and
cristae-like stripes. The "novel" style is what a model trained on the normal style never saw:
a darker, coarsely granular cytoplasm with swollen, rounder mitochondria whose matrix is pale
(brighter than the cytoplasm) inside one thick dark membrane, with faint sparse cristae.

``scene(seed, size, novel_share)`` composes both: a few smooth blobs of the image (about
``novel_share`` of its area) show the novel style, the rest the normal one. Labels are instance
ids; an object belongs to the region its centre lies in and is cut at the region's edge.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_DEMO = Path(__file__).resolve().parents[1] / "resources" / "demo" / "make_demo.py"
_spec = importlib.util.spec_from_file_location("_make_demo", _DEMO)
demo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo)


def normal_style(seed: int, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(float image, labels) of one normal-style 2D scene (the demo's renderer, one slice)."""
    image, labels = demo.render_volume(seed, shape=(1, size, size), count=count)
    return image[0].astype(np.float64), labels[0]


def novel_style(seed: int, size: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(float image, labels) of one novel-style scene: pale swollen mitochondria, dark granular
    cytoplasm."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    granules = demo.smooth_noise(rng, (size, size), 1.5)
    coarse = demo.smooth_noise(rng, (size, size), 6.0)
    image = 118.0 + 10.0 * coarse - 18.0 * np.clip(granules - 0.8, 0, None)
    labels = np.zeros((size, size), np.int32)
    occupied = np.zeros((size, size), bool)
    placed = 0
    for _ in range(count * 30):
        if placed == count:
            break
        major = rng.uniform(16, 30)
        minor = major * rng.uniform(0.65, 0.95)
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(major, size - major), rng.uniform(major, size - major)
        # A wobbly outline: the radius changes with the angle around the centre.
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = 1.0 + 0.12 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
        r = demo._ellipse(yy, xx, cy, cx, major, minor, angle) / wobble**2
        footprint = r <= 1.6
        if (footprint & occupied).any():
            continue
        occupied |= footprint
        placed += 1
        inside = r <= 1.0
        labels[inside] = placed
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        cristae = 0.5 + 0.5 * np.cos(2 * np.pi * u / rng.uniform(9, 13))
        matrix = 192.0 - 14.0 * cristae**4
        image[inside] = matrix[inside]
        edge = np.sqrt(r) * minor
        image -= 85.0 * np.exp(-((edge - (minor - 1.5)) / 1.6) ** 2) * (r <= 1.2)
    image = demo.gaussian_blur(image, 1.0)
    image += rng.normal(0.0, 9.0, image.shape)
    return image, labels


def novel_region(seed: int, size: int, share: float) -> np.ndarray:
    """A boolean mask of smooth blobs covering about ``share`` of the image."""
    rng = np.random.default_rng(seed)
    field = demo.smooth_noise(rng, (size, size), size / 7.0)
    return field >= np.quantile(field, 1.0 - share)


def scene(seed: int, size: int = 384, novel_share: float = 0.3, count: int | None = None):
    """uint8 image and int32 instance labels of a scene with a novel region (share 0: none)."""
    count = count or max(4, int(14 * (size / 256) ** 2))
    image, labels = normal_style(seed, size, count)
    if novel_share <= 0:
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), demo.relabel_sequential(labels)
    region = novel_region(seed + 10_000, size, novel_share)
    novel_image, novel_labels = novel_style(seed + 20_000, size, max(3, int(count * 1.2)))
    # an object belongs to the region its centre is in
    keep_normal = _objects_with_centre(labels, ~region)
    keep_novel = _objects_with_centre(novel_labels, region)
    out_labels = np.where(region, np.where(np.isin(novel_labels, keep_novel), novel_labels + labels.max(), 0),
                          np.where(np.isin(labels, keep_normal), labels, 0))
    soft = demo.gaussian_blur(region.astype(np.float64), 2.0)
    out_image = image * (1.0 - soft) + novel_image * soft
    out = np.clip(np.rint(out_image), 0, 255).astype(np.uint8)
    return out, _drop_small(demo.relabel_sequential(out_labels.astype(np.int32)), 30)


def _objects_with_centre(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ids = np.unique(labels[labels > 0])
    keep = []
    for i in ids:
        ys, xs = np.nonzero(labels == i)
        if mask[int(round(ys.mean())), int(round(xs.mean()))]:
            keep.append(i)
    return np.asarray(keep, dtype=labels.dtype)


def _drop_small(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    counts = np.bincount(labels.ravel())
    small = np.flatnonzero(counts < min_pixels)
    small = small[small > 0]
    if small.size:
        labels = np.where(np.isin(labels, small), 0, labels)
    return demo.relabel_sequential(labels)
