"""Tiny empanada-layout training sets for the finetuning tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def write_training_set(root: Path, counts: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """Write ``root/<source>/{images,masks}/<name>.tiff`` with bright disks as instances."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for source, count in counts.items():
        (root / source / "images").mkdir(parents=True, exist_ok=True)
        (root / source / "masks").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = rng.normal(60, 10, (size, size))
            mask = np.zeros((size, size), np.int32)
            for label in range(1, 4):
                cy, cx = rng.integers(8, size - 8, 2)
                radius = rng.integers(4, 9)
                disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
                mask[disk] = label
                image[disk] += 120
            name = f"{source}_{index:03d}.tiff"
            tifffile.imwrite(root / source / "images" / name, np.clip(image, 0, 255).astype(np.uint8))
            tifffile.imwrite(root / source / "masks" / name, mask)
    return root
