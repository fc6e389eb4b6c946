"""TIFF (BigTIFF, ImageJ, OME-TIFF), PNG and JPEG files, and folders of TIFF slices.

Uncompressed TIFFs are memory-mapped; compressed ones are read page by page (or tile by tile)
through tifffile's Zarr store, so a slice on screen decodes only its own pages. Colour images and
PNG/JPEG are small in practice and read into memory (``core.imageio.read_image``).
Voxel size: ImageJ ``spacing``/``unit``, OME ``PhysicalSize*``, else the resolution tags (pixels
per centimetre or inch, screen defaults such as 72 dpi ignored).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import tifffile

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.imageio import PILLOW_SUFFIXES, TIFF_SUFFIXES, read_image
from empanada_desktop.core.volumes.source import AxisView, ImageSource, Spacing, level_spacing, unit_name

log = logging.getLogger(__name__)

_SCREEN_DPI = {1.0, 72.0, 96.0, 150.0, 300.0, 600.0}  # written by default, not a pixel size
_MICROMETERS_PER = {2: 25_400.0, 3: 10_000.0}  # TIFF ResolutionUnit: inch, centimetre


def open_tiff(path: Path) -> ImageSource:
    """A TIFF as a lazy source (see the module docstring). Raises ImageReadError."""
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError, IndexError) as error:
        raise ImageReadError(
            f"{path} cannot be read as a TIFF image ({error}); it may be truncated or damaged. "
            "Copy or save it again."
        ) from None
    try:
        if not tif.series:
            raise ImageReadError(f"{path} holds no image data; save it again as a TIFF image.")
        series = tif.series[0]
        spacing = tiff_spacing(tif)
        axes, shape = series.axes, tuple(series.shape)
        if len(axes) != len(shape):
            axes = "Q" * (len(shape) - 2) + "YX"
        fixed = [0 if n == 1 and a not in "YX" else None for a, n in zip(axes, shape, strict=True)]
        kept = "".join(a for a, f in zip(axes, fixed, strict=True) if f is None)
        gray = len(kept) in (2, 3) and "S" not in kept and "C" not in kept
        if not gray:  # colour, channels, 4D: the eager reader converts or explains
            tif.close()
            notes: list[str] = []
            array = read_image(path, mmap=True, notes=notes)
            return ImageSource(array, path=path, format="tiff", spacing=spacing, notes=notes)
        kept_shape = tuple(n for n, f in zip(shape, fixed, strict=True) if f is None)
        try:
            array = tifffile.memmap(path, mode="r", series=0).reshape(kept_shape)
            tif.close()
            return ImageSource(array, path=path, format="tiff", spacing=spacing)
        except ValueError:  # compressed or not contiguous: read lazily through the Zarr store
            log.debug("%s is not memory-mappable; reading it page by page", path)
        return _zarr_tiff(path, tif, series, fixed, spacing)
    except ImageReadError:
        tif.close()
        raise
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError, IndexError) as error:
        tif.close()
        raise ImageReadError(
            f"{path} cannot be read as a TIFF image ({error}); it may be truncated or damaged. "
            "Copy or save it again."
        ) from None


def _zarr_tiff(path: Path, tif, series, fixed, spacing: Spacing) -> ImageSource:
    try:
        import zarr
    except ImportError:  # no lazy path: read it all
        tif.close()
        return ImageSource(read_image(path, mmap=False), path=path, format="tiff", spacing=spacing)
    stores = []
    levels = []
    base_shape = None
    for index, level in enumerate(series.levels):
        store = series.aszarr(level=index)
        stores.append(store)
        array = zarr.open_array(store, mode="r")
        view = AxisView(array, fixed) if any(f is not None for f in fixed) else array
        if base_shape is None:
            base_shape = view.shape
            base = view
            continue
        level_spacing_ = level_spacing(spacing, base_shape, view.shape)
        levels.append(ImageSource(view, path=path, format="tiff", spacing=level_spacing_, level=index))

    def close() -> None:
        for store in stores:
            store.close()
        tif.close()

    chunks = getattr(base, "chunks", None)
    return ImageSource(base, path=path, format="tiff", spacing=spacing, levels=levels, closers=[close],
                       chunks=chunks if chunks and len(chunks) == len(base.shape) else None)


def tiff_spacing(tif) -> Spacing:
    """Voxel size from ImageJ, OME or resolution tags (unknown when none is usable)."""
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    xy = _resolution(page)
    if tif.is_ome and tif.ome_metadata:
        found = _ome_tiff_spacing(tif.ome_metadata)
        if found is not None:
            return found
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = meta.get("unit")
        z = float(meta.get("spacing", 1.0) or 1.0)
        tags = page.tags
        if "XResolution" in tags and "YResolution" in tags:
            x = _ratio(tags["XResolution"].value)
            y = _ratio(tags["YResolution"].value)
            if x > 0 and y > 0 and unit:
                return Spacing((z, 1.0 / y, 1.0 / x), unit_name(unit), known=True, origin="ImageJ TIFF tags")
    if xy is not None:
        return Spacing((1.0,) + xy, "micrometer", known=True, origin="TIFF resolution tags")
    return Spacing()


def _ratio(value) -> float:
    if isinstance(value, tuple):
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


def _resolution(page) -> tuple[float, float] | None:
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    x, y = _ratio(tags["XResolution"].value), _ratio(tags["YResolution"].value)
    if unit not in _MICROMETERS_PER or x <= 0 or y <= 0:
        return None
    if unit == 2 and (x in _SCREEN_DPI or y in _SCREEN_DPI):
        return None
    per = _MICROMETERS_PER[unit]
    return per / y, per / x


def _ome_tiff_spacing(xml: str) -> Spacing | None:
    pixels = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
    if not pixels:
        return None
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(0)))
    if "PhysicalSizeX" not in attrs:
        return None
    x = float(attrs["PhysicalSizeX"])
    y = float(attrs.get("PhysicalSizeY", x))
    z = float(attrs.get("PhysicalSizeZ", 1.0))
    unit = attrs.get("PhysicalSizeXUnit", "µm")
    return Spacing((z, y, x), unit_name(unit), known=True, origin="OME-TIFF metadata")


def open_pillow(path: Path) -> ImageSource:
    notes: list[str] = []
    array = read_image(path, mmap=False, notes=notes)
    kind = "png" if path.suffix.lower() == ".png" else "jpeg"
    return ImageSource(array, path=path, format=kind, notes=notes)


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def tiff_slices(folder: Path) -> list[Path]:
    """The TIFF files of a folder in natural order (slice_2 before slice_10); hidden ones skipped."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(files, key=_natural_key)


class _SliceFolder:
    """(Z, Y, X) over one 2D TIFF per slice; every slice is checked against the first when read."""

    def __init__(self, files: list[Path]):
        self.files = files
        first = read_image(files[0], mmap=True)
        if first.ndim != 2:
            raise ImageReadError(
                f"{files[0]} has shape {first.shape}; a folder volume needs one 2D slice per file"
            )
        self.shape = (len(files),) + first.shape
        self.dtype = first.dtype
        self.ndim = 3

    def _slice(self, index: int) -> np.ndarray:
        image = read_image(self.files[index], mmap=True)
        if image.shape != self.shape[1:] or image.dtype != self.dtype:
            raise ImageReadError(
                f"{self.files[index]} is {image.shape} {image.dtype} but {self.files[0].name} is "
                f"{self.shape[1:]} {self.dtype}; all slices of a folder volume must match"
            )
        return image

    def __getitem__(self, key):
        from empanada_desktop.core.volumes.source import normalize_key

        slices, dropped = normalize_key(key, self.shape)
        zs = range(slices[0].start, slices[0].stop, slices[0].step)
        rest = tuple(slices[1:])
        out = np.stack([np.asarray(self._slice(z)[rest]) for z in zs]) if len(zs) else np.zeros(
            (0,) + tuple(len(range(s.start, s.stop, s.step)) for s in rest), self.dtype)
        return out[tuple(0 if d else slice(None) for d in dropped)]


def open_tiff_folder(folder: Path) -> ImageSource:
    files = tiff_slices(folder)
    if not files:
        raise ImageReadError(
            f"{folder} is a folder without TIFF slices (.tif, .tiff) or Zarr/N5 metadata; open a "
            "file, a .zarr/.n5 folder or a folder of TIFF slices"
        )
    array = _SliceFolder(files)
    with tifffile.TiffFile(files[0]) as tif:
        spacing = tiff_spacing(tif)
    notes = [f"{folder.name}: {len(files)} TIFF slices, {files[0].name} .. {files[-1].name}"]
    return ImageSource(array, path=folder, format="tiff-folder", spacing=spacing,
                       chunks=(1,) + array.shape[1:], notes=notes)


__all__ = ["open_tiff", "open_pillow", "open_tiff_folder", "tiff_slices", "tiff_spacing", "PILLOW_SUFFIXES"]
