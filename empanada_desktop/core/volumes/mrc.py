"""MRC/REC files (mrcfile), memory-mapped. Voxel size from the header, in ångström."""

from __future__ import annotations

from pathlib import Path

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes.source import ImageSource, Spacing

MRC_SUFFIXES = (".mrc", ".rec", ".st", ".ali", ".map", ".mrcs")


def open_mrc(path: Path) -> ImageSource:
    try:
        import mrcfile
    except ImportError:
        raise ImageReadError("reading MRC needs the 'mrcfile' package; install it with 'pip install mrcfile'") from None
    try:
        handle = mrcfile.mmap(path, mode="r")
    except (ValueError, OSError, EOFError) as error:
        raise ImageReadError(
            f"{path} cannot be read as MRC ({error}); it may be truncated or not an MRC file"
        ) from None
    data = handle.data
    if data is None or data.ndim not in (2, 3) or data.size == 0:
        handle.close()
        shape = None if data is None else data.shape
        raise ImageReadError(f"{path} holds no 2D or 3D image (shape {shape})")
    if data.dtype.kind not in "iuf":
        handle.close()
        raise ImageReadError(f"{path} holds {data.dtype} values (complex or RGB MRC); save a grayscale volume")
    size = handle.voxel_size
    zyx = (float(size.z), float(size.y), float(size.x))
    if all(v > 0 for v in zyx):
        spacing = Spacing(zyx if data.ndim == 3 else (1.0,) + zyx[1:], "angstrom", known=True, origin="MRC header")
    else:
        spacing = Spacing()
    return ImageSource(data, path=path, format="mrc", spacing=spacing, closers=[handle.close])
