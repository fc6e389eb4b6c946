"""Gatan DigitalMicrograph DM3 and DM4 files: a small reader of our own, memory-mapped.

(ncempy reads these too, but importing it takes seconds and pulls in matplotlib and scipy; the
part we need is short.) A DM file is a big-endian header (version 3 or 4, a length, a byte-order
flag that is 1 for little-endian data) followed by a tree of tags: groups (type 20: sorted and
open flags, a tag count) and data tags (type 21: ``%%%%``, a count of type descriptors, the
descriptors, the value). Lengths and descriptors are 4 bytes in DM3 and 8 in DM4, always
big-endian; DM4 also stores each tag's byte size. Values follow the byte-order flag.

The image is the largest entry of ``ImageList`` (the first is usually a thumbnail): its
``ImageData`` holds ``Data`` (an array, read here as a memory map at its offset),
``Dimensions`` (x, y[, z]) and ``Calibrations/Dimension`` (Scale, Units per axis).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes.source import ImageSource, Spacing, unit_name

GROUP, DATA = 20, 21
# Descriptor type -> numpy dtype (without byte order).
SIMPLE = {2: "i2", 3: "i4", 4: "u2", 5: "u4", 6: "f4", 7: "f8", 8: "u1", 9: "u1", 10: "u1", 11: "i8", 12: "u8"}
STRUCT, STRING, ARRAY = 15, 18, 20
_SMALL_ARRAY = 4096  # arrays up to this many elements are read (strings); larger ones are located


class ArrayRef:
    """A large array inside the file: where it starts, its dtype and element count."""

    def __init__(self, offset: int, dtype: np.dtype, count: int):
        self.offset, self.dtype, self.count = offset, dtype, count


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 - closed in parse()
        head = self._read(4)
        self.version = struct.unpack(">i", head)[0]
        if self.version not in (3, 4):
            raise ImageReadError(f"{path} is not a DM3/DM4 file (version field {self.version})")
        self.wide = self.version == 4
        self._read(8 if self.wide else 4)  # root length
        self.little = struct.unpack(">i", self._read(4))[0] == 1
        self.order = "<" if self.little else ">"

    def _read(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise EOFError("unexpected end of file")
        return data

    def _size(self) -> int:
        return struct.unpack(">Q" if self.wide else ">I", self._read(8 if self.wide else 4))[0]

    def parse(self) -> list:
        try:
            return self._group()
        finally:
            self.file.close()

    def _group(self) -> list:
        self._read(2)  # sorted, open
        count = self._size()
        return [self._entry() for _ in range(count)]

    def _entry(self) -> tuple[str, object]:
        kind = self._read(1)[0]
        length = struct.unpack(">H", self._read(2))[0]
        label = self._read(length).decode("latin-1")
        if self.wide:
            self._read(8)  # this tag's size in bytes
        if kind == GROUP:
            return label, self._group()
        if kind == DATA:
            return label, self._data()
        raise ValueError(f"unknown tag type {kind} at byte {self.file.tell()}")

    def _data(self):
        if self._read(4) != b"%%%%":
            raise ValueError(f"missing %%%% marker at byte {self.file.tell() - 4}")
        n = self._size()
        info = [self._size() for _ in range(n)]
        return self._value(info)

    def _dtype(self, code: int) -> np.dtype:
        if code not in SIMPLE:
            raise ValueError(f"unsupported DM value type {code}")
        return np.dtype(self.order + SIMPLE[code])

    def _scalar(self, code: int):
        dtype = self._dtype(code)
        return np.frombuffer(self._read(dtype.itemsize), dtype)[0].item()

    def _value(self, info: list[int]):
        kind = info[0]
        if kind in SIMPLE:
            return self._scalar(kind)
        if kind == STRING:
            return self._read(info[1] * 2).decode("utf-16-le" if self.little else "utf-16-be", "replace")
        if kind == STRUCT:
            fields = info[2]
            types = [info[4 + 2 * i] for i in range(fields)]
            return tuple(self._scalar(t) for t in types)
        if kind == ARRAY:
            element = info[1]
            if element == STRUCT:
                fields = info[3]
                types = [info[5 + 2 * i] for i in range(fields)]
                count = info[-1]
                itemsize = sum(self._dtype(t).itemsize for t in types)
                self.file.seek(count * itemsize, 1)
                return None
            count = info[2]
            dtype = self._dtype(element)
            if count <= _SMALL_ARRAY:
                return np.frombuffer(self._read(count * dtype.itemsize), dtype).copy()
            offset = self.file.tell()
            self.file.seek(count * dtype.itemsize, 1)
            return ArrayRef(offset, dtype, count)
        raise ValueError(f"unsupported DM value type {kind}")


def _get(group: list, label: str):
    for name, value in group:
        if name == label:
            return value
    return None


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        return "".join(chr(int(c)) for c in value if int(c))
    return str(value) if value is not None else ""


def read_tags(path: Path) -> list:
    """The whole tag tree (groups as lists of (label, value); big arrays as ArrayRef)."""
    try:
        return _Parser(path).parse()
    except ImageReadError:
        raise
    except (ValueError, EOFError, OSError, struct.error, UnicodeDecodeError) as error:
        raise ImageReadError(
            f"{path} cannot be read as a DigitalMicrograph file ({error}); it may be truncated "
            "or damaged"
        ) from None


def open_dm(path: Path) -> ImageSource:
    tags = read_tags(path)
    images = _get(tags, "ImageList") or []
    best = None
    for _, image in images:
        if not isinstance(image, list):
            continue
        data_group = _get(image, "ImageData")
        if not isinstance(data_group, list):
            continue
        data = _get(data_group, "Data")
        dims = _get(data_group, "Dimensions") or []
        if isinstance(data, ArrayRef | np.ndarray) and len(dims) >= 2:
            count = data.count if isinstance(data, ArrayRef) else data.size
            if best is None or count > best[0]:
                best = (count, data, [int(v) for _, v in dims], data_group)
    if best is None:
        raise ImageReadError(f"{path} holds no image data (no ImageList entry with Data and Dimensions)")
    count, data, dims, data_group = best
    shape = tuple(reversed(dims))
    if int(np.prod(shape)) != count:
        raise ImageReadError(f"{path}: the image has {count} values but dimensions {dims}; the file is damaged")
    if len(shape) not in (2, 3):
        raise ImageReadError(f"{path} has {len(shape)} dimensions {shape}; open a 2D image or a 3D volume")
    if isinstance(data, ArrayRef):
        array = np.memmap(path, dtype=data.dtype, mode="r", offset=data.offset, shape=shape)
    else:
        array = data.reshape(shape)
    if array.dtype.kind not in "iuf":
        raise ImageReadError(f"{path} holds {array.dtype} values (RGB or complex); save a grayscale image")
    fmt = "dm4" if path.suffix.lower() == ".dm4" else "dm3"
    return ImageSource(array, path=path, format=fmt, spacing=_spacing(data_group, len(dims)))


def _spacing(data_group: list, ndim: int) -> Spacing:
    calibrations = _get(data_group, "Calibrations")
    axes = _get(calibrations, "Dimension") if isinstance(calibrations, list) else None
    if not isinstance(axes, list) or len(axes) < ndim:
        return Spacing()
    scales, units = [], []
    for _, axis in axes[:ndim]:
        scale = _get(axis, "Scale") if isinstance(axis, list) else None
        scales.append(float(scale) if scale else 1.0)
        units.append(_text(_get(axis, "Units") if isinstance(axis, list) else None))
    zyx = list(reversed(scales))
    zyx = [1.0] * (3 - len(zyx)) + zyx
    unit = units[0] if units[0] else ""
    if not unit or any(s <= 0 for s in zyx):
        return Spacing()
    return Spacing(tuple(abs(s) for s in zyx), unit_name(unit), known=True, origin="DM calibration tags")
