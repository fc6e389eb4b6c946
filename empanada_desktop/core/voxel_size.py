"""The voxel size of a 3D TIFF, from its ImageJ or OME metadata, as (z, y, x) in the file's unit.

Used to show xz and yz planes of an anisotropic stack at their true proportions.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)


def read_voxel_size(path: str | Path) -> tuple[float, float, float] | None:
    """(z, y, x) spacing of a TIFF stack, or None when the file does not say."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.ome_metadata:
                found = _from_ome(tif.ome_metadata)
                if found:
                    return found
            spacing = (tif.imagej_metadata or {}).get("spacing")
            page = tif.pages[0]
            x = _resolution(page.tags.get("XResolution"))
            y = _resolution(page.tags.get("YResolution"))
            if spacing and x:
                return float(spacing), float(y or x), float(x)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        log.info("no voxel size read from %s: %s", path, error)
    return None


def _resolution(tag) -> float | None:
    """Pixel size from a TIFF resolution tag (pixels per unit)."""
    if tag is None:
        return None
    value = tag.value
    per_unit = value[0] / value[1] if isinstance(value, tuple) and value[1] else float(value)
    return 1.0 / per_unit if per_unit > 0 else None


def _from_ome(xml: str) -> tuple[float, float, float] | None:
    sizes = {}
    for axis in "XYZ":
        match = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', xml)
        if match:
            sizes[axis] = float(match.group(1))
    if {"X", "Z"} <= sizes.keys():
        return sizes["Z"], sizes.get("Y", sizes["X"]), sizes["X"]
    return None


def z_scale(voxel_size: tuple[float, float, float] | None) -> float:
    """How many xy pixels one slice step spans (1.0 for isotropic or unknown)."""
    if not voxel_size or voxel_size[2] <= 0 or voxel_size[0] <= 0:
        return 1.0
    return float(voxel_size[0] / voxel_size[2])
