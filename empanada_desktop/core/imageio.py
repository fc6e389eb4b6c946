"""Reading and writing EM images: 2D (H, W) or 3D (Z, H, W) single-channel arrays.

TIFF (including BigTIFF) goes through tifffile and is memory-mapped when its pixel data are
uncompressed and contiguous, so a multi-gigabyte volume opens at once; PNG and JPEG go through
Pillow. Colour images become grayscale. Everything the user could get wrong (a missing, empty,
truncated or 4D file) raises ImageReadError naming the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import tifffile

from empanada_desktop.core.atomic import atomic_path
from empanada_desktop.core.errors import ImageReadError

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PILLOW_SUFFIXES
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5
_RGB_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma, as Pillow's "L"
_PERCENTILE_SAMPLES = 4_000_000  # enough for stable percentiles, small enough for any volume


def read_image(
    path: str | os.PathLike[str], *, mmap: bool = True, notes: list[str] | None = None
) -> np.ndarray:
    """Read a 2D (H, W) or 3D (Z, H, W) image; colour becomes gray (its dtype is kept).

    Args:
        path: a .tif/.tiff (BigTIFF too), .png, .jpg or .jpeg file.
        mmap: return a read-only ``numpy.memmap`` when the TIFF allows it.
        notes: if given, sentences about conversions done (e.g. colour to gray) are appended.

    Raises:
        ImageReadError: the file is missing, empty, truncated, not an image, or not 2D/3D.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"Image {path} does not exist; check the path.")
    if not path.is_file():
        raise ImageReadError(f"{path} is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageReadError(f"Image {path} is empty (0 bytes); copy or save it again.")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        array, axes = _read_tiff(path, mmap)
    elif suffix in PILLOW_SUFFIXES:
        array, axes = _read_pillow(path)
    else:
        raise ImageReadError(
            f"{path} has an unsupported type '{path.suffix}'; use TIFF (.tif, .tiff), PNG or JPEG."
        )
    return _to_single_channel(path, array, axes, notes)


def to_uint8(array: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Convert an image to uint8 for annotation, training and empanada's 8-bit models.

    uint8 passes unchanged (note None). Colour (a last axis of 3 or 4) becomes gray. Other
    integer and float images are scaled linearly so that their 0.5th..99.5th percentiles map to
    0..255 (clipped); integers already within 0..255 are kept as they are. The note says what
    was done, for the user.
    """
    array = np.asarray(array) if not isinstance(array, np.ndarray) else array
    notes: list[str] = []
    if array.ndim in (3, 4) and array.shape[-1] in (3, 4) and array.shape[-2] > 4:
        array = _rgb_to_gray(array)
        notes.append("colour converted to gray")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array), "; ".join(notes) or None
    if array.dtype == np.bool_:
        notes.append("binary image shown as 0/255")
        return array.astype(np.uint8) * 255, "; ".join(notes)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ImageReadError(f"Images of type {array.dtype} cannot be converted to 8-bit.")
    kind = f"{array.dtype.itemsize * 8}-bit" + (" float" if array.dtype.kind == "f" else "")
    sample = _sample(array)
    finite = sample[np.isfinite(sample)] if array.dtype.kind == "f" else sample
    if finite.size == 0:
        notes.append(f"{kind} image without valid values shown black")
        return np.zeros(array.shape, np.uint8), "; ".join(notes)
    if array.dtype.kind in "iu" and finite.min() >= 0 and finite.max() <= 255:
        notes.append(f"{kind} image with values within 0..255 kept as they are")
        return array.astype(np.uint8), "; ".join(notes)
    low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        high = low + 1.0
    out = np.empty(array.shape, np.uint8)
    # Slice by slice so that a large (memory-mapped) volume never becomes one float64 array.
    flat_in = array.reshape((-1,) + array.shape[-2:]) if array.ndim > 2 else array[np.newaxis]
    flat_out = out.reshape(flat_in.shape)
    scale = 255.0 / (high - low)
    for index in range(flat_in.shape[0]):
        plane = (flat_in[index].astype(np.float32) - np.float32(low)) * np.float32(scale)
        np.nan_to_num(plane, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
        flat_out[index] = np.clip(np.rint(plane), 0, 255).astype(np.uint8)
    notes.append(
        f"{kind} image scaled to 8-bit: values {_fmt(low)}..{_fmt(high)} "
        f"({LOW_PERCENTILE}th..{HIGH_PERCENTILE}th percentile) -> 0..255"
    )
    return out, "; ".join(notes)


def write_tiff(path: str | os.PathLike[str], array: np.ndarray, *, compression: str | None = None) -> Path:
    """Write a 2D or 3D single-channel array as TIFF, atomically (BigTIFF when over 2 GB).

    ``compression="zlib"`` makes small files (good for label masks) that are no longer
    memory-mappable; the default writes uncompressed, contiguous, memory-mappable data.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ImageReadError(f"Cannot write {path}: expected a 2D or 3D array, got shape {array.shape}.")
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            array,
            photometric="minisblack",
            bigtiff=array.nbytes > 2**31 - 2**25,
            compression=compression,
            metadata={"axes": "ZYX" if array.ndim == 3 else "YX"},
        )
    return path


def _read_tiff(path: Path, mmap: bool) -> tuple[np.ndarray, str]:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageReadError(f"{path} holds no image data; save it again as a TIFF image.")
            series = tif.series[0]
            axes = series.axes
            if mmap:
                try:
                    return tifffile.memmap(path, mode="r", series=0), axes
                except ValueError:  # compressed or not contiguous: read into memory instead
                    log.debug("%s is not memory-mappable; reading it into memory", path)
            return series.asarray(), axes
    except ImageReadError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, KeyError, IndexError) as error:
        raise ImageReadError(
            f"{path} cannot be read as a TIFF image ({error}); it may be truncated or damaged. "
            "Copy or save it again."
        ) from None


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "1":
                image = image.convert("L")
            elif image.mode in ("P", "PA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
                image = image.convert("RGB")  # gray + alpha too: RGB then luma gives the gray back
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(
            f"{path} cannot be read as an image ({error}); it may be truncated or damaged."
        ) from None
    axes = "YXS" if array.ndim == 3 else "YX"
    return array, axes


def _to_single_channel(path: Path, array: np.ndarray, axes: str, notes: list[str] | None) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise ImageReadError(f"{path} has pixels of type {array.dtype}; use integer or float gray values.")
    if len(axes) != array.ndim:  # no usable axes metadata: assume ..., Y, X
        axes = "Q" * (array.ndim - 2) + "YX"
    # Drop axes of length 1 (a single page, a single channel) but never Y or X.
    keep = [i for i, size in enumerate(array.shape) if size != 1 or axes[i] in "YX"]
    if len(keep) != array.ndim:
        array = array.reshape([array.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
    samples = axes.find("S")
    if samples >= 0 and array.shape[samples] in (3, 4):
        array = _rgb_to_gray(np.moveaxis(array, samples, -1))
        if notes is not None:
            notes.append(f"{path.name}: colour converted to gray")
    elif samples >= 0 or "C" in axes:
        raise ImageReadError(
            f"{path} has {array.shape[samples if samples >= 0 else axes.find('C')]} channels; "
            "save a single-channel (grayscale) image or stack."
        )
    if array.ndim not in (2, 3):
        raise ImageReadError(
            f"{path} has {array.ndim} dimensions (shape {tuple(array.shape)}); use a 2D image or a "
            "3D stack (Z, Y, X) with one channel."
        )
    return array


def _rgb_to_gray(array: np.ndarray) -> np.ndarray:
    dtype = array.dtype
    gray = np.tensordot(array[..., :3].astype(np.float32), _RGB_WEIGHTS, axes=([-1], [0]))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(gray), info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return gray >= 0.5
    return gray.astype(dtype)


def _sample(array: np.ndarray) -> np.ndarray:
    """About 4 million values spread over the array, read by strides (never the whole volume)."""
    if array.ndim == 2:
        planes = [array]
    else:
        stack = array.reshape((-1,) + array.shape[-2:])
        chosen = np.unique(np.linspace(0, stack.shape[0] - 1, min(stack.shape[0], 64)).astype(int))
        planes = [stack[i] for i in chosen]
    per_plane = max(1, _PERCENTILE_SAMPLES // len(planes))
    parts = []
    for plane in planes:
        step = max(1, int(np.ceil(np.sqrt(plane.size / per_plane))))
        parts.append(np.asarray(plane[::step, ::step]).ravel())
    return np.concatenate(parts)


def _fmt(value: float) -> str:
    return f"{value:.4g}"
