"""``open_image`` and ``list_datasets``: pick the reader from the path, explain what is wrong.

A dataset inside a container is named after the file, ``volume.h5:/raw``, ``image.zarr:/0``,
``data.n5:/setup0/timepoint0``, or given as ``dataset=``. A file whose contents are not what its
extension says is refused with a message naming what it looks like.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.imageio import IMAGE_SUFFIXES, PILLOW_SUFFIXES, TIFF_SUFFIXES, read_image
from empanada_desktop.core.volumes.source import DatasetInfo, ImageSource

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
MRC_SUFFIXES = (".mrc", ".rec", ".st", ".ali", ".map", ".mrcs")
DM_SUFFIXES = (".dm3", ".dm4")
CONTAINER_SUFFIXES = (".zarr", ".n5")
FILE_SUFFIXES = TIFF_SUFFIXES + PILLOW_SUFFIXES + HDF5_SUFFIXES + MRC_SUFFIXES + DM_SUFFIXES
SUPPORTED = (
    "TIFF (.tif, .tiff, a folder of TIFF slices), PNG, JPEG, OME-Zarr/Zarr (.zarr), N5 (.n5), "
    "HDF5 (.h5, .hdf5), MRC (.mrc, .rec, .st, .ali, .map) or DigitalMicrograph (.dm3, .dm4)"
)
_KIND_SUFFIX = {"TIFF": ".tif", "PNG": ".png", "JPEG": ".jpg", "HDF5": ".h5", "MRC": ".mrc", "DM3": ".dm3", "DM4": ".dm4"}


def split_dataset(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``"volume.h5:/raw"`` -> (Path("volume.h5"), "/raw"); a plain existing path -> (path, None)."""
    text = os.fspath(path)
    if os.path.exists(text):
        return Path(text), None
    at = len(text)
    while (at := text.rfind(":", 0, at)) > 0:
        head = Path(text[:at])
        if head.exists() and (head.is_dir() or head.suffix.lower() in HDF5_SUFFIXES):
            return head, text[at + 1 :] or None
    return Path(text), None


def sniff(path: Path) -> str | None:
    """What a file's first bytes say it is: "TIFF", "PNG", "JPEG", "HDF5", "MRC", "DM3", "DM4"."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1024)
    except OSError:
        return None
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return "HDF5"
    if head[:4] in (b"\x00\x00\x00\x03", b"\x00\x00\x00\x04") and len(head) > 16:
        return "DM3" if head[3] == 3 else "DM4"
    if head[208:212] in (b"MAP ", b"MAP\x00"):
        return "MRC"
    return None


def _expected(suffix: str) -> tuple[str, ...]:
    if suffix in TIFF_SUFFIXES:
        return ("TIFF",)
    if suffix == ".png":
        return ("PNG",)
    if suffix in (".jpg", ".jpeg"):
        return ("JPEG",)
    if suffix in HDF5_SUFFIXES:
        return ("HDF5",)
    if suffix in MRC_SUFFIXES:
        return ("MRC",)
    return ("DM3", "DM4")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"Image {path} does not exist; check the path.")
    if path.is_file() and path.stat().st_size == 0:
        raise ImageReadError(f"Image {path} is empty (0 bytes); copy or save it again.")


def _check_contents(path: Path, suffix: str) -> None:
    expected = _expected(suffix)
    found = sniff(path)
    if found is None and suffix in MRC_SUFFIXES:
        return  # old MRC files have no 'MAP ' stamp; mrcfile decides
    if found is not None and found not in expected:
        if {found, *expected} <= {"DM3", "DM4"}:
            return
        raise ImageReadError(
            f"{path} is named like a {expected[0]} file but its contents are {found}: rename it to "
            f"{path.stem}{_KIND_SUFFIX[found]} (or re-save it as {expected[0]})."
        )
    if found is None and suffix not in MRC_SUFFIXES:
        raise ImageReadError(
            f"{path} is not a {expected[0]} file (its first bytes match no known image format); it "
            "may be damaged or have the wrong extension. Copy or save it again."
        )


def open_image(path: str | os.PathLike[str], dataset: str | None = None) -> ImageSource:
    """Open any supported image or volume lazily (see ``ImageSource``).

    Args:
        path: a file, a ``.zarr``/``.n5`` folder, a folder of TIFF slices, or ``file:/dataset``.
        dataset: the dataset inside an HDF5/Zarr/N5 container (overrides the ``:/`` part).

    Raises:
        ImageReadError: missing, empty, damaged or mislabelled files, unsupported types, several
            datasets and none chosen (the message lists them), shapes other than 2D/3D gray.
    """
    path, inline = split_dataset(path)
    dataset = dataset or inline
    _check_file(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        from empanada_desktop.core.volumes.n5 import is_n5_folder, open_n5
        from empanada_desktop.core.volumes.zarr_io import is_zarr_folder, open_zarr

        if is_zarr_folder(path) or suffix == ".zarr":
            return open_zarr(path, dataset)
        if is_n5_folder(path) or suffix == ".n5":
            return open_n5(path, dataset)
        from empanada_desktop.core.volumes.tiff import open_tiff_folder

        return open_tiff_folder(path)
    if suffix not in FILE_SUFFIXES:
        found = sniff(path)
        hint = f" Its contents look like {found}: rename it to {path.stem}{_KIND_SUFFIX[found]}." if found else ""
        raise ImageReadError(f"{path} has an unsupported type '{path.suffix}'; use {SUPPORTED}.{hint}")
    _check_contents(path, suffix)
    if dataset and suffix not in HDF5_SUFFIXES:
        raise ImageReadError(f"{path} is a single image; it has no dataset {dataset!r} to choose")
    if suffix in TIFF_SUFFIXES:
        from empanada_desktop.core.volumes.tiff import open_tiff

        return open_tiff(path)
    if suffix in PILLOW_SUFFIXES:
        from empanada_desktop.core.volumes.tiff import open_pillow

        return open_pillow(path)
    if suffix in HDF5_SUFFIXES:
        from empanada_desktop.core.volumes.hdf5 import open_hdf5

        return open_hdf5(path, dataset)
    if suffix in MRC_SUFFIXES:
        from empanada_desktop.core.volumes.mrc import open_mrc

        return open_mrc(path)
    from empanada_desktop.core.volumes.dm import open_dm

    return open_dm(path)


def list_datasets(path: str | os.PathLike[str]) -> list[DatasetInfo]:
    """The images inside a file or container (HDF5 datasets, Zarr arrays and OME-Zarr images, N5
    datasets and multiscale groups); a single-image file gives one entry named ''."""
    path, inline = split_dataset(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        from empanada_desktop.core.volumes.n5 import is_n5_folder, list_n5
        from empanada_desktop.core.volumes.zarr_io import is_zarr_folder, list_zarr

        if is_zarr_folder(path) or suffix == ".zarr":
            return list_zarr(path, inline)
        if is_n5_folder(path) or suffix == ".n5":
            return list_n5(path, inline)
    elif suffix in HDF5_SUFFIXES:
        _check_contents(path, suffix)
        from empanada_desktop.core.volumes.hdf5 import list_hdf5

        return list_hdf5(path)
    with open_image(path) as source:
        return [DatasetInfo("", source.shape, str(source.dtype))]


def open_volume(path: str | os.PathLike[str], notes: list[str] | None = None):
    """Open an image as a (Z, H, W) volume, memory-mapped where possible (2D gives Z = 1).

    TIFF, PNG and JPEG give a numpy array; the other formats of ``core.volumes`` (Zarr, N5, HDF5
    as ``file.h5:/dataset``, MRC, DM, TIFF folders) give a lazy ``ImageSource``.
    """
    if Path(path).suffix.lower() not in IMAGE_SUFFIXES or Path(path).is_dir():
        source = open_image(path)
        if notes is not None:
            notes.extend(source.notes)
        return source[...][np.newaxis] if source.ndim == 2 else source
    array = read_image(path, mmap=True, notes=notes)
    return array[np.newaxis] if array.ndim == 2 else array
