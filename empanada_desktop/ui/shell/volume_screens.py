"""Screenshot of the main window on a lazily read OME-Zarr volume with OME-Zarr labels.

The demo stack is written as a small OME-Zarr image (two pyramid levels, 40 x 5 x 5 nm voxels)
with its labels as ``labels/mito`` in a temporary folder, then opened as a user would: the image
lazily (a slice reads its chunks), the labels lazily, the voxel size in the status bar, and the
inference dock showing where "Segment volume" would write.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from empanada_desktop.core import opening
from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.shell.screen_registry import register_screen

VOXEL = (40.0, 5.0, 5.0)


def write_ome_zarr_image(path: Path, volume: np.ndarray, voxel_size=VOXEL) -> Path:
    """A minimal OME-Zarr 0.4 image (levels 1 and 2x in y, x) of a (Z, Y, X) volume."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for level, factor in enumerate((1, 2)):
        data = volume[:, ::factor, ::factor]
        group.create_array(str(level), data=data, chunks=(1, 128, 128))
        scale = [voxel_size[0], voxel_size[1] * factor, voxel_size[2] * factor]
        datasets.append({"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


def _big_volume_window():
    from empanada_desktop.core.volumes import open_image
    from empanada_desktop.core.volumes.zarr_io import write_labels

    folder = Path(tempfile.mkdtemp(prefix="empanada-screens-"))
    image, path = opening.demo_image()
    labels_file = path.with_name("em_stack_labels.tif") if path is not None else None
    if labels_file is not None and labels_file.is_file():
        labels = opening.read_labels(labels_file)
    else:
        image, labels = opening.synthetic_em()
    zarr_path = write_ome_zarr_image(folder / "cell.ome.zarr", np.asarray(image))
    labels_path = write_labels(zarr_path / "labels" / "mito", np.asarray(labels, np.int32), voxel_size=VOXEL,
                               unit="nanometer")
    window = MainWindow()
    window.open_path(zarr_path)
    window.document.set_labels(open_image(labels_path), labels_path, copy=False)
    inference = window.docks.get("Inference")
    if inference is not None:
        inference.raise_()
    return window


register_screen("main_window_volume", _big_volume_window)
