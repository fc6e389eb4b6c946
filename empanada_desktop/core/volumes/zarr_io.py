"""Zarr and OME-Zarr (NGFF 0.4 on Zarr v2, 0.5 on Zarr v3) images in, OME-Zarr labels out.

Reading: a group with ``multiscales`` metadata (under ``ome`` in 0.5) is an OME-Zarr image; its
datasets are the pyramid levels and their ``scale`` transformations the voxel sizes. Time and
channel axes of length 1 are dropped (time: the first point is used, with a note); several
channels are refused. A plain Zarr array opens as it is; a plain group with one image array
opens that array, with several it asks which (``list_datasets``).

Writing: ``create_labels`` makes an OME-Zarr label image (``multiscales`` + ``image-label``),
either standalone or as ``<image>.zarr/labels/<name>`` (then listed in the image's
``labels/`` group), chunked and compressed, in the Zarr version of the image beside it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.volumes.source import AxisView, DatasetInfo, ImageSource, Spacing, unit_name

NGFF_V2 = "0.4"
NGFF_V3 = "0.5"


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ImageReadError(
            "reading and writing Zarr needs the 'zarr' package (version 3); install it with "
            "'pip install \"zarr>=3\"'"
        ) from None
    return zarr


def is_zarr_folder(path: Path) -> bool:
    return any((path / marker).is_file() for marker in (".zgroup", ".zarray", "zarr.json"))


def _ome(attrs: dict) -> dict:
    return attrs.get("ome", attrs) if isinstance(attrs.get("ome"), dict) else attrs


def _open_node(path: Path, dataset: str | None):
    zarr = _zarr()
    try:
        return zarr.open(store=str(path), mode="r", path=(dataset or "").strip("/"))
    except Exception as error:  # noqa: BLE001 - zarr raises many kinds for a bad store
        where = f"{path}:{dataset}" if dataset else str(path)
        raise ImageReadError(
            f"{where} cannot be opened as Zarr ({type(error).__name__}: {error}); check the path "
            "and the dataset name (list them with list_datasets / --list-datasets)"
        ) from None


def open_zarr(path: Path, dataset: str | None = None) -> ImageSource:
    zarr = _zarr()
    node = _open_node(path, dataset)
    if isinstance(node, zarr.Group):
        meta = _ome(dict(node.attrs))
        if "multiscales" in meta:
            return _open_multiscale(path, dataset, node, meta)
        images = [info for info in list_zarr(path, dataset) if len(info.shape) >= 2]
        if len(images) == 1:
            inner = images[0].name
            return open_zarr(path, inner)
        names = ", ".join(str(i) for i in images) or "none"
        raise ImageReadError(
            f"{path}{':' + dataset if dataset else ''} is a Zarr group with {len(images)} images ({names}); "
            f"choose one as '{path}:/NAME' (or --dataset NAME)"
        )
    return _array_source(path, dataset, node, Spacing(), "zarr", notes=[])


def _array_source(path, dataset, array, spacing, fmt, notes, axes=None, level=0, levels=None):
    shape = tuple(array.shape)
    axes = axes or ["?"] * len(shape)
    fixed = []
    for name, n in zip(axes, shape, strict=True):
        if name in ("t", "c") or (name == "?" and n == 1 and len(shape) > 3):
            if name == "c" and n > 1:
                raise ImageReadError(
                    f"{path} has {n} channels; segmentation needs one grayscale channel: save "
                    "the channel you want as its own image"
                )
            if name == "t" and n > 1 and level == 0:
                notes.append(f"{path.name}: time point 1 of {n} used")
            fixed.append(0)
        else:
            fixed.append(None)
    view = AxisView(array, fixed) if any(f is not None for f in fixed) else array
    if len(view.shape) not in (2, 3):
        raise ImageReadError(
            f"{path}{':' + dataset if dataset else ''} has shape {shape}; open a 2D image or a 3D "
            "(Z, Y, X) volume with one channel"
        )
    chunks = tuple(c for c, f in zip(array.chunks, fixed, strict=True) if f is None)
    return ImageSource(view, path=path, format=fmt, dataset=dataset, spacing=spacing, chunks=chunks,
                       notes=notes, level=level, levels=levels)


def _scale_of(transforms: Sequence[dict] | None, n: int) -> list[float]:
    scale = [1.0] * n
    for t in transforms or ():
        if t.get("type") == "scale" and "scale" in t:
            scale = [a * float(b) for a, b in zip(scale, t["scale"], strict=True)]
    return scale


def _open_multiscale(path: Path, dataset: str | None, group, meta: dict) -> ImageSource:
    ms = meta["multiscales"][0]
    axes_meta = ms.get("axes") or [{"name": n} for n in "tczyx"[-len(group[ms["datasets"][0]["path"]].shape):]]
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in axes_meta]
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes_meta]
    spatial = [i for i, a in enumerate(axes) if a not in ("t", "c")]
    spatial_units = {unit_name(units[i]) for i in spatial if units[i]}
    unit = spatial_units.pop() if len(spatial_units) == 1 else "pixel"
    sources = []
    notes: list[str] = []
    for level, ds in enumerate(ms["datasets"]):
        array = group[ds["path"]]
        scale = _scale_of(ds.get("coordinateTransformations"), len(axes))
        outer = _scale_of(ms.get("coordinateTransformations"), len(axes))
        size = [scale[i] * outer[i] for i in spatial]
        known = unit != "pixel" or any(s != 1.0 for s in size)
        spacing = Spacing(tuple(size), unit, known=known, origin="OME-Zarr coordinateTransformations")
        sources.append(_array_source(path, dataset, array, spacing, "ome-zarr", notes if level == 0 else [],
                                     axes=axes, level=level))
    base = sources[0]
    base._levels = sources[1:]
    return base


def list_zarr(path: Path, dataset: str | None = None) -> list[DatasetInfo]:
    zarr = _zarr()
    node = _open_node(path, dataset)
    prefix = (dataset or "").strip("/")
    if isinstance(node, zarr.Array):
        return [DatasetInfo(prefix, tuple(node.shape), str(node.dtype))]
    found: list[DatasetInfo] = []
    multiscale_groups: set[str] = set()
    if "multiscales" in _ome(dict(node.attrs)):
        first = _ome(dict(node.attrs))["multiscales"][0]["datasets"][0]["path"]
        found.append(DatasetInfo(prefix, tuple(node[first].shape), str(node[first].dtype), multiscale=True))
        multiscale_groups.add("")
    for name, member in sorted(node.members(max_depth=None), key=lambda m: m[0]):
        full = f"{prefix}/{name}".strip("/")
        if any(name == g or name.startswith(g + "/") for g in multiscale_groups if g) or (
            "" in multiscale_groups and "/" not in name and isinstance(member, zarr.Array)
        ):
            continue
        if isinstance(member, zarr.Group) and "multiscales" in _ome(dict(member.attrs)):
            first = _ome(dict(member.attrs))["multiscales"][0]["datasets"][0]["path"]
            found.append(DatasetInfo(full, tuple(member[first].shape), str(member[first].dtype), multiscale=True))
            multiscale_groups.add(name)
        elif isinstance(member, zarr.Array):
            found.append(DatasetInfo(full, tuple(member.shape), str(member.dtype)))
    return found


# -- writing labels ------------------------------------------------------------------------------


def _image_group_of(path: Path):
    """The OME-Zarr image group when ``path`` is ``<image>.zarr/labels/<name>``, else None."""
    if path.parent.name != "labels":
        return None
    image = path.parent.parent
    if not is_zarr_folder(image):
        return None
    zarr = _zarr()
    group = zarr.open_group(str(image), mode="r")
    return group if "multiscales" in _ome(dict(group.attrs)) else None


def create_labels(
    path,
    shape: Sequence[int],
    *,
    chunks: Sequence[int],
    voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
    unit: str = "pixel",
    dtype="int32",
    extra_attributes: dict | None = None,
    overwrite: bool = False,
):
    """Create (or reopen) an OME-Zarr label image; returns the full-resolution ``zarr.Array``.

    ``path`` ending in ``labels/<name>`` inside an OME-Zarr image puts the labels there (listed
    in ``labels/``'s metadata, Zarr v2/NGFF 0.4 or v3/NGFF 0.5 as the image); any other path
    becomes a standalone NGFF 0.4 label image. Arrays are Blosc-zstd compressed, chunked by
    ``chunks``. An existing label image of the same shape is reopened (for resuming) unless
    ``overwrite``; ``extra_attributes`` are stored under the group's ``empanada_desktop`` key.
    """
    zarr = _zarr()
    path = Path(path)
    shape = tuple(int(n) for n in shape)
    chunks = tuple(min(int(c), n) for c, n in zip(chunks, shape, strict=True))
    image = _image_group_of(path)
    zarr_format = image.metadata.zarr_format if image is not None else 2
    ndim = len(shape)
    names = "zyx"[-ndim:]
    unit = unit_name(unit)
    axes = [{"name": n, "type": "space", **({"unit": unit} if unit != "pixel" else {})} for n in names]
    scale = [float(v) for v in list(voxel_size)[-ndim:]]
    version = NGFF_V3 if zarr_format == 3 else NGFF_V2
    multiscales = [{
        **({"version": version} if zarr_format == 2 else {}),
        "name": path.name.removesuffix(".zarr"),
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]
    image_label = {**({"version": version} if zarr_format == 2 else {})}
    if image is not None:
        image_label["source"] = {"image": "../../"}
    if path.exists() and not overwrite:
        group = zarr.open_group(str(path), mode="r+")
        array = group["0"]
        if tuple(array.shape) != shape:
            raise ImageReadError(
                f"{path} already holds labels of shape {tuple(array.shape)}, not {shape}; choose "
                "another output or delete it"
            )
        return array
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    if zarr_format == 2:
        from numcodecs import Blosc

        compressors = [Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE)]
        array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, compressors=compressors,
                                   fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
        group.attrs.update({"multiscales": multiscales, "image-label": image_label,
                            "empanada_desktop": extra_attributes or {}})
    else:
        from zarr.codecs import BloscCodec

        array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                   compressors=[BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")],
                                   dimension_names=list(names))
        group.attrs.update({"ome": {"version": version, "multiscales": multiscales, "image-label": image_label},
                            "empanada_desktop": extra_attributes or {}})
    if image is not None:
        _list_label(path.parent, path.name, zarr_format)
    return array


def _list_label(labels_dir: Path, name: str, zarr_format: int) -> None:
    zarr = _zarr()
    group = zarr.open_group(str(labels_dir), mode="a", zarr_format=zarr_format)
    attrs = dict(group.attrs)
    meta = attrs.get("ome", attrs) if zarr_format == 3 else attrs
    listed = list(meta.get("labels", []))
    if name not in listed:
        listed.append(name)
    if zarr_format == 3:
        group.attrs["ome"] = {**attrs.get("ome", {}), "version": NGFF_V3, "labels": listed}
    else:
        group.attrs["labels"] = listed


def write_labels(path, labels: np.ndarray, *, voxel_size=(1.0, 1.0, 1.0), unit="pixel",
                 chunks: Sequence[int] | None = None) -> Path:
    """Write an in-memory label array as an OME-Zarr label image (overwriting)."""
    labels = np.asarray(labels)
    chunks = chunks or tuple(min(n, c) for n, c in zip(labels.shape, (64, 512, 512)[-labels.ndim:], strict=True))
    array = create_labels(path, labels.shape, chunks=chunks, voxel_size=voxel_size, unit=unit,
                          dtype=labels.dtype, overwrite=True)
    array[...] = labels
    return Path(path)


def read_attributes(path) -> dict:
    """The JSON attributes of a Zarr group (v2 ``.zattrs`` or v3 ``zarr.json``), without zarr."""
    path = Path(path)
    if (path / ".zattrs").is_file():
        return json.loads((path / ".zattrs").read_text())
    if (path / "zarr.json").is_file():
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    return {}
