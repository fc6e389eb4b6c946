"""``ImageSource``: one lazily read 2D or 3D single-channel image, whatever its file format.

An ImageSource looks like a read-only numpy array (``shape``, ``dtype``, ``ndim``, numpy-style
``source[z, y0:y1, x0:x1]`` returning a ``numpy.ndarray``) but reads only the chunks a request
touches. It also carries what the viewer and the inference jobs need about the file: ``spacing``
(voxel size z, y, x and unit, which the caller may replace when the file is wrong), ``chunks``
(the natural read unit), ``levels`` (multiscale pyramid, full resolution first) and ``format``.

Sources pickle by reopening their file (``path`` + ``dataset``), so they can be sent to Dask
workers on other machines that see the same file system.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

UNIT_NAMES = {
    "nm": "nanometer", "nanometer": "nanometer", "nanometers": "nanometer", "nanometre": "nanometer",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
    "microns": "micrometer", "micrometer": "micrometer", "micrometre": "micrometer", "\\u00b5m": "micrometer",
    "mm": "millimeter", "millimeter": "millimeter", "cm": "centimeter", "centimeter": "centimeter",
    "m": "meter", "meter": "meter", "a": "angstrom", "å": "angstrom", "angstrom": "angstrom",
    "angstroms": "angstrom", "pm": "picometer", "picometer": "picometer",
    "pixel": "pixel", "pixels": "pixel", "px": "pixel", "": "pixel",
}


def unit_name(unit: str | None) -> str:
    """OME-NGFF unit name for a unit as files write it ('nm' -> 'nanometer'); unknown kept as is."""
    if unit is None:
        return "pixel"
    text = str(unit).strip()
    return UNIT_NAMES.get(text.lower(), UNIT_NAMES.get(text, text))


@dataclass(frozen=True)
class Spacing:
    """Voxel size (z, y, x) and its unit, and where they came from.

    ``known`` is False when the file says nothing (then the size is 1 pixel). Replace a wrong
    one with ``source.spacing = Spacing((40.0, 8.0, 8.0), "nanometer", known=True, origin="user")``
    or ``source.with_spacing(...)``.
    """

    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str = "pixel"
    known: bool = False
    origin: str = ""

    def __post_init__(self) -> None:
        size = tuple(float(v) for v in self.voxel_size)
        if len(size) == 2:
            size = (1.0,) + size
        if len(size) != 3 or not all(math.isfinite(v) and v > 0 for v in size):
            raise ValueError(f"voxel size must be three positive numbers (z, y, x), got {self.voxel_size}")
        object.__setattr__(self, "voxel_size", size)
        object.__setattr__(self, "unit", unit_name(self.unit))


@dataclass(frozen=True)
class DatasetInfo:
    """One image inside a container file (HDF5, Zarr, N5), as ``list_datasets`` reports it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    multiscale: bool = False

    def __str__(self) -> str:
        kind = ", multiscale" if self.multiscale else ""
        return f"{self.name or '/'} {self.shape} {self.dtype}{kind}"


def normalize_key(key, shape: Sequence[int]) -> tuple[list[slice], list[bool]]:
    """A numpy basic-indexing key -> one slice per axis (start, stop, step >= 1) and which axes
    an integer index removes. Fancy indexing and negative steps are refused (TypeError)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:at] + (slice(None),) * fill + key[at + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices ({len(key)}) for an image of {len(shape)} dimensions")
    key = key + (slice(None),) * (len(shape) - len(key))
    slices, dropped = [], []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, int | np.integer):
            i = int(k) + n if k < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {int(k)} is out of bounds for an axis of size {n}")
            slices.append(slice(i, i + 1, 1))
            dropped.append(True)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step < 1:
                raise TypeError("image sources do not support negative steps; reverse the result instead")
            stop = max(start, stop)
            slices.append(slice(start, stop, step))
            dropped.append(False)
        else:
            raise TypeError(f"image sources take integers and slices, not {type(k).__name__}")
    return slices, dropped


class ChunkedArray:
    """A lazy array read chunk by chunk through ``read_chunk(chunk_index) -> ndarray``.

    For formats without a library of their own (N5 here): a request reads exactly the chunks it
    overlaps. Chunks at the far edges may be smaller than ``chunks``.
    """

    def __init__(self, shape, dtype, chunks, read_chunk: Callable[[tuple[int, ...]], np.ndarray]):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        self.ndim = len(self.shape)
        self._read_chunk = read_chunk

    def __getitem__(self, key) -> np.ndarray:
        slices, dropped = normalize_key(key, self.shape)
        extent = [s.stop - s.start for s in slices]
        out = np.zeros(extent, self.dtype)
        ranges = [
            range(s.start // c, -(-s.stop // c)) if s.stop > s.start else range(0)
            for s, c in zip(slices, self.chunks, strict=True)
        ]
        for index in np.ndindex(*[len(r) for r in ranges]):
            chunk_index = tuple(r[i] for r, i in zip(ranges, index, strict=True))
            block = self._read_chunk(chunk_index)
            origin = [i * c for i, c in zip(chunk_index, self.chunks, strict=True)]
            src, dst = [], []
            for s, o, n in zip(slices, origin, block.shape, strict=True):
                lo, hi = max(s.start, o), min(s.stop, o + n)
                src.append(slice(lo - o, hi - o))
                dst.append(slice(lo - s.start, hi - s.start))
            out[tuple(dst)] = block[tuple(src)]
        out = out[tuple(slice(None, None, s.step) for s in slices)]
        return out[tuple(0 if d else slice(None) for d in dropped)]


class AxisView:
    """A lazy view of an array with some axes fixed to an index (time 0, channel 0, ...)."""

    def __init__(self, base, fixed: Sequence[int | None]):
        self.base = base
        self.fixed = tuple(fixed)
        self.shape = tuple(n for n, f in zip(base.shape, self.fixed, strict=True) if f is None)
        self.dtype = np.dtype(base.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        slices, dropped = normalize_key(key, self.shape)
        parts = iter(zip(slices, dropped, strict=True))
        base_key = []
        for f in self.fixed:
            if f is not None:
                base_key.append(f)
            else:
                s, d = next(parts)
                base_key.append(s.start if d else s)
        return np.asarray(self.base[tuple(base_key)])


def _reopen(path, dataset, spacing, level):
    from empanada_desktop.core.volumes.opening import open_image

    source = open_image(path, dataset=dataset)
    if level:
        source = source.levels[level]
    source.spacing = spacing
    return source


class ImageSource:
    """A lazily read 2D (Y, X) or 3D (Z, Y, X) single-channel image. See the module docstring.

    Attributes:
        path: the file or folder.
        dataset: the image inside a container (HDF5 dataset, Zarr/N5 path), or None.
        format: "tiff", "tiff-folder", "png", "jpeg", "ome-zarr", "zarr", "n5", "hdf5", "mrc", "dm3"
            or "dm4".
        spacing: voxel size and unit (a ``Spacing``; assign a new one to correct it).
        notes: sentences about conversions done while opening (colour to gray, ...).
    """

    def __init__(
        self,
        array,
        *,
        path,
        format: str,
        dataset: str | None = None,
        spacing: Spacing | None = None,
        chunks: Sequence[int] | None = None,
        levels: Sequence[ImageSource] | None = None,
        notes: Sequence[str] = (),
        closers: Sequence[Callable[[], object]] = (),
        level: int = 0,
    ):
        if len(array.shape) not in (2, 3):
            raise ValueError(f"an ImageSource is 2D or 3D, got shape {tuple(array.shape)}")
        self._array = array
        self.path = Path(path)
        self.dataset = dataset
        self.format = format
        self.spacing = spacing or Spacing()
        self.notes = list(notes)
        self._chunks = tuple(int(c) for c in chunks) if chunks is not None else None
        self._levels = list(levels) if levels else []
        self._closers = list(closers)
        self._level = level
        self._lock = threading.Lock()

    # -- array protocol ----------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        normalize_key(key, self.shape)  # the same errors for every format
        return np.asarray(self._array[key])

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data.astype(dtype) if dtype is not None else data

    @property
    def numpy_array(self) -> np.ndarray | None:
        """The numpy array behind this source when it is one (in memory or memory-mapped, so
        slicing it costs no decoding), else None (chunked formats: Zarr, N5, HDF5, ...)."""
        return self._array if isinstance(self._array, np.ndarray) else None

    # -- metadata ----------------------------------------------------------------------------

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """(z, y, x) in ``unit``; z is 1 for a 2D image."""
        return self.spacing.voxel_size

    @property
    def unit(self) -> str:
        return self.spacing.unit

    @property
    def chunks(self) -> tuple[int, ...]:
        """The shape of the pieces the file is stored in (a whole slice for plain TIFF and MRC)."""
        if self._chunks is not None:
            return self._chunks
        chunks = getattr(self._array, "chunks", None)
        if isinstance(chunks, tuple) and len(chunks) == self.ndim and all(isinstance(c, int) for c in chunks):
            return chunks
        return (1,) * (self.ndim - 2) + self.shape[-2:]

    @property
    def levels(self) -> tuple[ImageSource, ...]:
        """Multiscale levels, this (full-resolution) one first; each has its own ``spacing``."""
        return (self,) + tuple(self._levels)

    def with_spacing(self, voxel_size=None, unit: str | None = None) -> ImageSource:
        """This source with a corrected voxel size and/or unit (levels are scaled alike)."""
        size = tuple(voxel_size) if voxel_size is not None else self.spacing.voxel_size
        new = Spacing(size, unit if unit is not None else self.spacing.unit, known=True, origin="user")
        copy = _copy(self)
        copy.spacing = new
        ratio = [a / b for a, b in zip(new.voxel_size, self.spacing.voxel_size, strict=True)]
        copy._levels = [_copy(level) for level in self._levels]
        for level in copy._levels:
            level.spacing = Spacing(
                tuple(v * r for v, r in zip(level.spacing.voxel_size, ratio, strict=True)),
                new.unit, known=True, origin="user",
            )
        return copy

    def to_dask(self):
        """This source as a dask array chunked like the file (needs dask)."""
        import dask.array as da

        return da.from_array(self, chunks=self.chunks, asarray=False, fancy=False, name=False)

    def describe(self) -> str:
        where = f"{self.path}" + (f":{self.dataset}" if self.dataset else "")
        size = " x ".join(f"{v:g}" for v in self.voxel_size)
        spacing = f"{size} {self.unit}" if self.spacing.known else "voxel size unknown"
        return f"{where}: {self.format}, shape {self.shape}, {self.dtype}, {spacing}"

    def __repr__(self) -> str:
        return f"<ImageSource {self.describe()}>"

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Release file handles (idempotent). Reading after closing is an error for some formats."""
        with self._lock:
            closers, self._closers = self._closers, []
        for close in closers:
            close()
        for level in self._levels:
            level.close()

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __reduce__(self):
        return (_reopen, (str(self.path), self.dataset, self.spacing, self._level))


def _copy(source: ImageSource) -> ImageSource:
    copy = object.__new__(ImageSource)
    copy.__dict__.update(source.__dict__)
    copy._lock = threading.Lock()
    copy._closers = []  # the original owns the handles
    return copy


def replace_spacing(spacing: Spacing, **changes) -> Spacing:
    return dataclasses.replace(spacing, **changes)


def level_spacing(spacing: Spacing, base_shape: Sequence[int], level_shape: Sequence[int]) -> Spacing:
    """The spacing of a pyramid level, from how much smaller it is than the full resolution."""
    factors = [b / n for b, n in zip(base_shape, level_shape, strict=True)]
    factors = [1.0] * (3 - len(factors)) + factors
    size = tuple(v * f for v, f in zip(spacing.voxel_size, factors, strict=True))
    return Spacing(size, spacing.unit, known=spacing.known, origin=spacing.origin)
