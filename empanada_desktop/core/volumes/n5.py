"""N5 containers, read with numpy and the standard library (zarr 3 no longer reads N5).

An N5 dataset is a folder with ``attributes.json`` (``dimensions``, ``blockSize``, ``dataType``,
``compression``), every axis listed fastest first (x, y, z), and one file per block at
``<i_x>/<i_y>/<i_z>``. A block file starts with a big-endian header (mode uint16, number of
dimensions uint16, the block's own size per dimension uint32, plus an element count uint32 in
mode 1) followed by the compressed big-endian data, x fastest. Missing blocks are zeros.
Compression: raw, gzip (or zlib), bzip2, xz; blosc and zstd through numcodecs.

Voxel size: ``pixelResolution`` ({dimensions, unit}) or ``resolution`` (+ ``units``/``unit``);
multiscale groups (``s0``, ``s1``, ... with ``downsamplingFactors``) give ``levels``.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zlib
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes.source import (
    AxisView,
    ChunkedArray,
    DatasetInfo,
    ImageSource,
    Spacing,
    level_spacing,
    unit_name,
)

_DTYPES = {
    "uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8",
    "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8", "float32": "f4", "float64": "f8",
}


def is_n5_folder(path: Path) -> bool:
    return (path / "attributes.json").is_file() and not (path / ".zarray").exists()


def _attributes(folder: Path) -> dict:
    file = folder / "attributes.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise ImageReadError(f"{file} is not valid JSON ({error}); the N5 container is damaged") from None


def _is_dataset(attrs: dict) -> bool:
    return "dimensions" in attrs and "dataType" in attrs


class N5Dataset:
    """One N5 dataset as a lazy (Z, Y, X)-ordered array (axes reversed from the file's order)."""

    def __init__(self, folder: Path):
        attrs = _attributes(folder)
        if not _is_dataset(attrs):
            raise ImageReadError(f"{folder} is not an N5 dataset (no dimensions/dataType in attributes.json)")
        self.folder = folder
        if attrs["dataType"] not in _DTYPES:
            raise ImageReadError(f"{folder}: N5 data type {attrs['dataType']!r} is not supported")
        self.file_dtype = np.dtype(">" + _DTYPES[attrs["dataType"]])
        compression = attrs.get("compression", {"type": attrs.get("compressionType", "raw")})
        self.compression = compression if isinstance(compression, dict) else {"type": str(compression)}
        self.attrs = attrs
        self._array = ChunkedArray(attrs["dimensions"][::-1], self.file_dtype.newbyteorder("="),
                                   attrs["blockSize"][::-1], self._read_block)

    def _decompress(self, data: bytes) -> bytes:
        kind = self.compression.get("type", "raw")
        if kind == "raw":
            return data
        if kind == "gzip":
            return zlib.decompress(data) if self.compression.get("useZlib") else gzip.decompress(data)
        if kind == "bzip2":
            return bz2.decompress(data)
        if kind == "xz":
            return lzma.decompress(data)
        if kind in ("blosc", "zstd"):
            try:
                import numcodecs
            except ImportError:
                raise ImageReadError(f"{self.folder}: {kind}-compressed N5 needs the numcodecs package") from None
            codec = numcodecs.Blosc() if kind == "blosc" else numcodecs.Zstd()
            return bytes(codec.decode(data))
        raise ImageReadError(f"{self.folder}: N5 compression {kind!r} is not supported")

    def _read_block(self, index: tuple[int, ...]) -> np.ndarray:
        file = self.folder.joinpath(*[str(i) for i in reversed(index)])
        block_shape = [min(c, n - i * c) for i, c, n in zip(index, self._array.chunks, self._array.shape, strict=True)]
        if not file.is_file():
            return np.zeros(block_shape, self._array.dtype)
        raw = file.read_bytes()
        try:
            mode, ndim = np.frombuffer(raw[:4], ">u2")
            dims = np.frombuffer(raw[4 : 4 + 4 * ndim], ">u4").astype(int)
            start = 4 + 4 * ndim + (4 if mode == 1 else 0)
            if mode not in (0, 1):
                raise ValueError(f"block mode {mode} (object blocks) is not image data")
            data = np.frombuffer(self._decompress(raw[start:]), self.file_dtype)
            count = int(np.prod(dims))
            block = data[:count].reshape(tuple(dims[::-1])).astype(self._array.dtype)
        except (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            raise ImageReadError(f"N5 block {file} cannot be read ({error}); the container is damaged") from None
        if list(block.shape) != block_shape:  # edge blocks may be stored full size
            block = block[tuple(slice(0, n) for n in block_shape)]
        return block

    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    @property
    def chunks(self):
        return self._array.chunks

    def __getitem__(self, key):
        return self._array[key]


def _spacing(attrs: dict, ndim: int) -> Spacing:
    resolution, unit = None, None
    pixel = attrs.get("pixelResolution")
    if isinstance(pixel, dict) and "dimensions" in pixel:
        resolution, unit = pixel["dimensions"], pixel.get("unit")
    elif "resolution" in attrs:
        resolution = attrs["resolution"]
        units = attrs.get("units") or attrs.get("unit")
        unit = units[0] if isinstance(units, list) and units else units
    if not resolution:
        return Spacing()
    size = [float(v) for v in resolution][:ndim][::-1]
    size = [1.0] * (3 - len(size)) + size
    return Spacing(tuple(size), unit_name(unit), known=True, origin="N5 attributes")


def _squeezed(dataset: N5Dataset):
    fixed = [0 if n == 1 else None for n in dataset.shape] if len(dataset.shape) > 3 else [None] * len(dataset.shape)
    return AxisView(dataset, fixed) if any(f is not None for f in fixed) else dataset


def open_n5(root: Path, dataset: str | None = None) -> ImageSource:
    folder = root / (dataset or "").strip("/") if dataset else root
    if not folder.is_dir():
        raise ImageReadError(f"{root} has no N5 dataset {dataset!r}; list them with list_datasets")
    attrs = _attributes(folder)
    if _is_dataset(attrs):
        data = N5Dataset(folder)
        view = _squeezed(data)
        if len(view.shape) not in (2, 3):
            raise ImageReadError(f"{folder} has shape {data.shape}; open a 2D image or a 3D (Z, Y, X) volume")
        return ImageSource(view, path=root, format="n5", dataset=dataset, chunks=data.chunks[-len(view.shape):],
                           spacing=_spacing(attrs, len(view.shape)))
    scales = sorted((p for p in folder.iterdir() if p.is_dir() and p.name[:1] == "s" and p.name[1:].isdigit()),
                    key=lambda p: int(p.name[1:]))
    if scales and _is_dataset(_attributes(scales[0])):
        base_attrs = _attributes(scales[0])
        spacing = _spacing({**attrs, **base_attrs}, len(base_attrs["dimensions"]))
        sources = []
        for level, scale in enumerate(scales):
            data = N5Dataset(scale)
            view = _squeezed(data)
            lspacing = spacing if level == 0 else level_spacing(spacing, sources[0].shape, view.shape)
            sources.append(ImageSource(view, path=root, format="n5", dataset=dataset, spacing=lspacing,
                                       chunks=data.chunks[-len(view.shape):], level=level))
        sources[0]._levels = sources[1:]
        return sources[0]
    images = [info for info in list_n5(root, dataset) if len(info.shape) >= 2]
    if len(images) == 1:
        return open_n5(root, images[0].name)
    names = ", ".join(str(i) for i in images) or "none"
    raise ImageReadError(
        f"{folder} is an N5 group with {len(images)} images ({names}); choose one as "
        f"'{root}:/NAME' (or --dataset NAME)"
    )


def list_n5(root: Path, dataset: str | None = None) -> list[DatasetInfo]:
    start = root / dataset.strip("/") if dataset else root
    found = []
    for attrs_file in sorted(start.rglob("attributes.json")):
        folder = attrs_file.parent
        attrs = _attributes(folder)
        name = folder.relative_to(root).as_posix()
        name = "" if name == "." else name
        if _is_dataset(attrs):
            parent = folder.parent
            if folder.name[:1] == "s" and folder.name[1:].isdigit() and (parent / "s0" / "attributes.json").is_file():
                if folder.name == "s0":
                    found.append(DatasetInfo(parent.relative_to(root).as_posix() if parent != root else "",
                                             tuple(attrs["dimensions"][::-1]), attrs["dataType"], multiscale=True))
                continue
            found.append(DatasetInfo(name, tuple(attrs["dimensions"][::-1]), attrs["dataType"]))
    return found
