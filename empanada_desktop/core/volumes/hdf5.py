"""HDF5 files (h5py): one dataset of a file, chosen by name when the file holds several.

Voxel size: the ``element_size_um`` attribute (z, y, x in micrometres; Fiji, ilastik) or a
``resolution``/``voxel_size``/``pixel_size``/``spacing`` attribute (z, y, x) with ``unit(s)``.
"""

from __future__ import annotations

from pathlib import Path

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes.source import AxisView, DatasetInfo, ImageSource, Spacing, unit_name

_SIZE_ATTRIBUTES = ("resolution", "voxel_size", "pixel_size", "spacing")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImageReadError("reading HDF5 needs the 'h5py' package; install it with 'pip install h5py'") from None
    return h5py


def _open_file(path: Path):
    h5py = _h5py()
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ImageReadError(
            f"{path} cannot be read as HDF5 ({error}); it may be truncated or not an HDF5 file"
        ) from None


def _datasets(handle) -> list[DatasetInfo]:
    h5py = _h5py()
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1:
            found.append(DatasetInfo("/" + name, tuple(obj.shape), str(obj.dtype)))

    handle.visititems(visit)
    return found


def list_hdf5(path: Path) -> list[DatasetInfo]:
    with _open_file(path) as handle:
        return _datasets(handle)


def _spacing(dataset, ndim: int) -> Spacing:
    attrs = dataset.attrs
    if "element_size_um" in attrs:
        size = [float(v) for v in attrs["element_size_um"]]
        return Spacing(tuple(([1.0] * 3 + size)[-3:]), "micrometer", known=True, origin="HDF5 element_size_um")
    for key in _SIZE_ATTRIBUTES:
        if key in attrs:
            size = [float(v) for v in (attrs[key] if hasattr(attrs[key], "__len__") else [attrs[key]] * ndim)]
            unit = attrs.get("unit", attrs.get("units", None))
            if unit is not None and not isinstance(unit, str):
                unit = unit[0] if hasattr(unit, "__len__") and len(unit) else str(unit)
            if isinstance(unit, bytes):
                unit = unit.decode()
            return Spacing(tuple(([1.0] * 3 + size)[-3:]), unit_name(unit), known=True, origin=f"HDF5 {key}")
    return Spacing()


def open_hdf5(path: Path, dataset: str | None = None) -> ImageSource:
    handle = _open_file(path)
    try:
        if not dataset:
            images = [info for info in _datasets(handle) if len(info.shape) >= 2]
            if len(images) != 1:
                names = ", ".join(str(i) for i in images) or "none"
                raise ImageReadError(
                    f"{path} holds {len(images)} image datasets ({names}); choose one as "
                    f"'{path}:/NAME' (or --dataset NAME)"
                )
            dataset = images[0].name
        if dataset not in handle or not isinstance(handle[dataset], _h5py().Dataset):
            names = ", ".join(str(i) for i in _datasets(handle)) or "none"
            raise ImageReadError(f"{path} has no dataset {dataset!r}; it holds: {names}")
        data = handle[dataset]
        fixed = [0 if n == 1 else None for n in data.shape] if data.ndim > 3 else [None] * data.ndim
        view = AxisView(data, fixed) if any(f is not None for f in fixed) else data
        if len(view.shape) not in (2, 3):
            raise ImageReadError(
                f"{path}:{dataset} has shape {data.shape}; open a 2D image or a 3D (Z, Y, X) volume"
            )
        if data.dtype.kind not in "biuf":
            raise ImageReadError(f"{path}:{dataset} holds {data.dtype} values, not an image")
        chunks = tuple(c for c, f in zip(data.chunks, fixed, strict=True) if f is None) if data.chunks else None
        return ImageSource(view, path=path, format="hdf5", dataset=dataset, chunks=chunks,
                           spacing=_spacing(data, len(view.shape)), closers=[handle.close])
    except BaseException:
        handle.close()
        raise
