"""Generate the synthetic EM-like demo data in this folder (deterministic: fixed seeds).

Run from the repository root: ``python resources/demo/make_demo.py``. It writes

* ``em_stack.tif``: 8 x 256 x 256 uint8, uncompressed (memory-mappable): textured cytoplasm,
  dark membranes, and mitochondria with a dark double border and cristae-like stripes, blurred
  and noisy like a FIB-SEM stack;
* ``em_stack_labels.tif``: the ground-truth instance labels (int32, one id per mitochondrion
  through all its slices, zlib-compressed);
* ``training_set/``: 16 patches of 128 x 128 in empanada's layout, in two sources (8 from this
  stack, 8 from a second synthetic acquisition with other contrast), masks int32.

Only numpy for the synthesis; the files are written with the app's own writers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, for empanada_desktop

from empanada_desktop.core.dataset import write_pair  # noqa: E402
from empanada_desktop.core.imageio import write_tiff  # noqa: E402

SHAPE = (8, 256, 256)
PATCH = 128


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Periodic Gaussian blur of a 2D array through the FFT (numpy only)."""
    fy = np.fft.fftfreq(image.shape[0])[:, None]
    fx = np.fft.rfftfreq(image.shape[1])[None, :]
    kernel = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=image.shape)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = gaussian_blur(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-9)


def place_mitochondria(rng: np.random.Generator, shape: tuple[int, int, int], count: int) -> list[dict]:
    """Random elongated and rounded ellipsoid-like objects that do not touch each other."""
    depth, height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    occupied = np.zeros((height, width), bool)
    objects: list[dict] = []
    for _ in range(count * 20):
        if len(objects) == count:
            break
        elongated = rng.random() < 0.6
        major = rng.uniform(22, 42) if elongated else rng.uniform(12, 20)
        minor = rng.uniform(8, 13) if elongated else major * rng.uniform(0.7, 0.95)
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(major, height - major), rng.uniform(major, width - major)
        footprint = _ellipse(yy, xx, cy, cx, major + 6, minor + 6, angle) <= 1.0
        if (footprint & occupied).any():
            continue
        occupied |= footprint
        objects.append(
            {
                "cy": cy, "cx": cx, "major": major, "minor": minor, "angle": angle,
                "drift": rng.normal(0, 0.8, 2),  # centre moves a little from slice to slice
                "z_center": rng.uniform(-2, depth + 1), "z_radius": rng.uniform(4, 12),
                "period": rng.uniform(5.0, 7.5), "phase": rng.uniform(0, 2 * np.pi),
            }
        )
    return objects


def _ellipse(yy, xx, cy, cx, a, b, angle):
    cos, sin = np.cos(angle), np.sin(angle)
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    return (u / a) ** 2 + (v / b) ** 2


def render_volume(seed: int, shape=SHAPE, count=14, contrast=1.0, brightness=0.0):
    """One synthetic EM stack and its instance labels."""
    rng = np.random.default_rng(seed)
    depth, height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    objects = place_mitochondria(rng, shape, count)
    membranes = smooth_noise(rng, (height, width), 22.0)
    texture_base = smooth_noise(rng, (height, width), 3.0)
    image = np.zeros(shape, np.uint8)
    labels = np.zeros(shape, np.int32)
    for z in range(depth):
        # Cytoplasm: mid gray with granular texture that changes slowly through the stack.
        texture = 0.7 * texture_base + 0.5 * smooth_noise(rng, (height, width), 2.0)
        slice_ = 165.0 + 12.0 * texture
        # Membranes (cell borders, ER): thin dark lines along level sets of a smooth field.
        shifted = membranes + 0.04 * (z - depth / 2)
        for level in (-0.8, 0.0, 0.9):
            slice_ -= 55.0 * np.exp(-((shifted - level) / 0.035) ** 2)
        for index, obj in enumerate(objects, start=1):
            dz = (z - obj["z_center"]) / obj["z_radius"]
            if abs(dz) >= 1.0:
                continue
            scale = np.sqrt(1.0 - dz**2)
            if obj["minor"] * scale < 4.0:
                continue
            cy = obj["cy"] + obj["drift"][0] * z
            cx = obj["cx"] + obj["drift"][1] * z
            a, b = obj["major"] * max(scale, 0.5), obj["minor"] * scale
            r = _ellipse(yy, xx, cy, cx, a, b, obj["angle"])
            inside = r <= 1.0
            labels[z][inside] = index
            # Matrix darker than cytoplasm; cristae: stripes across the long axis.
            u = (xx - cx) * np.cos(obj["angle"]) + (yy - cy) * np.sin(obj["angle"])
            cristae = 0.5 + 0.5 * np.cos(2 * np.pi * u / obj["period"] + obj["phase"])
            matrix = 118.0 - 38.0 * cristae ** 3
            slice_[inside] = matrix[inside]
            # Dark double membrane at the border (two thin rings just inside the edge).
            edge = np.sqrt(r) * min(a, b)  # roughly pixels from the centre along the minor axis
            border = min(a, b)
            for offset in (0.8, 3.0):
                slice_ -= 70.0 * np.exp(-((edge - (border - offset)) / 0.9) ** 2) * (r <= 1.15)
        slice_ = gaussian_blur(slice_, 1.1)
        slice_ = (slice_ - 128.0) * contrast + 128.0 + brightness
        slice_ += rng.normal(0.0, 9.0, slice_.shape)  # detector noise
        image[z] = np.clip(np.rint(slice_), 0, 255).astype(np.uint8)
    return image, labels


def relabel_sequential(mask: np.ndarray) -> np.ndarray:
    ids = np.unique(mask)
    ids = ids[ids != 0]
    lookup = np.zeros(int(mask.max()) + 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[mask]


def sample_patches(rng, image, labels, n):
    """Random 128 x 128 crops with some mitochondria in them (like picked patches)."""
    depth, height, width = image.shape
    patches = []
    while len(patches) < n:
        z = int(rng.integers(0, depth))
        y, x = (int(v) for v in rng.integers(0, [height - PATCH + 1, width - PATCH + 1]))
        mask = labels[z, y : y + PATCH, x : x + PATCH]
        if (mask > 0).mean() < 0.04:
            continue
        patches.append((image[z, y : y + PATCH, x : x + PATCH].copy(), relabel_sequential(mask)))
    return patches


def main(out_dir: Path = HERE) -> None:
    image, labels = render_volume(seed=2024)
    write_tiff(out_dir / "em_stack.tif", image)
    write_tiff(out_dir / "em_stack_labels.tif", labels, compression="zlib")
    other_image, other_labels = render_volume(seed=7, count=12, contrast=0.8, brightness=-12.0)
    rng = np.random.default_rng(11)
    training = out_dir / "training_set"
    for source, (img, lab) in (("demo_stack", (image, labels)), ("second_acquisition", (other_image, other_labels))):
        for index, (patch, mask) in enumerate(sample_patches(rng, img, lab, 8)):
            write_pair(training, source, f"patch_{index:04d}", patch, mask)
    print(f"wrote {out_dir}: stack {image.shape}, {labels.max()} mitochondria, 16 training patches")


if __name__ == "__main__":
    main()
