"""Where a volume's labels go by default, and which kind of output suits a volume.

- OME-Zarr output of an OME-Zarr image: inside it, as the image-label ``<image>.zarr/labels/<model>``
  (napari, neuroglancer and webKnossos show it as labels of that image).
- OME-Zarr output of anything else: a separate ``<stem>_<model>_labels.zarr`` beside the image
  (in ``fallback`` when that folder cannot be written, or the image has no file).
- TIFF output (small volumes): ``<fallback>/<stem>_<model>_labels.tif``.
"""

from __future__ import annotations

import os
from pathlib import Path

# Above this many bytes a volume is segmented block-wise into OME-Zarr by default (a TIFF of its
# labels, int32, would be four times as large, and one process holds a whole slice stack).
BLOCKWISE_BYTES = 1 << 30
ZARR_FORMATS = ("ome-zarr", "zarr", "n5", "hdf5")


def _stem(path: Path | None, dataset: str | None) -> str:
    if path is None:
        return "volume"
    name = path.name
    for suffix in (".ome.zarr", ".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem if path.suffix else name
    if dataset:
        name += "_" + dataset.strip("/").replace("/", "_")
    return name or "volume"


def default_labels_output(path: Path | None, dataset: str | None, image_format: str | None,
                          model: str, kind: str, fallback: Path) -> Path:
    """The default output for labels of ``model`` on the image at ``path`` (see the module)."""
    stem = _stem(path, dataset)
    if kind == "tiff":
        return Path(fallback) / f"{stem}_{model}_labels.tif"
    if path is not None and image_format == "ome-zarr":
        image = Path(path) / dataset.strip("/") if dataset else Path(path)
        return image / "labels" / model
    folder = Path(path).parent if path is not None else None
    if folder is None or not os.access(folder, os.W_OK):
        folder = Path(fallback)
    return folder / f"{stem}_{model}_labels.zarr"


def suggested_kind(image_format: str | None, nbytes: int) -> str:
    """'zarr' for chunked formats and big volumes, else 'tiff' (the single-process engine)."""
    return "zarr" if image_format in ZARR_FORMATS or nbytes > BLOCKWISE_BYTES else "tiff"
