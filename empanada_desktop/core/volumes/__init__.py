"""One lazy reader interface for every image format labs have (see ``source.ImageSource``).

    from empanada_desktop.core.volumes import open_image, list_datasets

    source = open_image("cell.zarr")            # or .tif, a TIFF folder, .n5, .h5:/raw, .mrc, .dm4
    source.shape, source.dtype, source.voxel_size, source.unit, source.chunks, source.format
    plane = source[120]                         # reads only the chunks of slice 120
    thumbnail = source.levels[-1][120 // 8]     # a coarser pyramid level, when the file has them
    source = source.with_spacing((50, 8, 8), "nanometer")   # correct a wrong voxel size

Labels are written as OME-Zarr with ``zarr_io.create_labels`` / ``zarr_io.write_labels``.
Core stays free of torch and Qt; each format's library is imported only when that format is
opened, with an install hint when it is missing.
"""

from empanada_desktop.core.volumes.opening import (
    FILE_SUFFIXES,
    SUPPORTED,
    list_datasets,
    open_image,
    open_volume,
    sniff,
    split_dataset,
)
from empanada_desktop.core.volumes.source import DatasetInfo, ImageSource, Spacing

__all__ = [
    "DatasetInfo",
    "FILE_SUFFIXES",
    "ImageSource",
    "SUPPORTED",
    "Spacing",
    "list_datasets",
    "open_image",
    "open_volume",
    "sniff",
    "split_dataset",
]
