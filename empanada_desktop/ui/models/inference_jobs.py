"""The inference panel's worker jobs, and the model it keeps loaded between 2D runs.

Everything here runs in the worker thread (``ui.shell.worker.Job``) or, for the patch picker's
prediction provider, in the thread that calls it; torch is imported only when a job runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np


class ModelCache:
    """(model name, device) -> (model, ModelConfig); used only from one worker job at a time."""

    def __init__(self):
        self.key = None
        self.value = None
        self.lock = threading.Lock()

    def get(self, name: str, device: str):
        with self.lock:
            if self.key != (name, device):
                from empanada_desktop.backend.loading import load_registered

                self.value = load_registered(name, device=device)
                self.key = (name, device)
            return self.value


def _engine(cache: ModelCache, model_name: str, settings):
    from empanada_desktop.backend.devices import resolve_device
    from empanada_desktop.backend.inference.engine2d import Engine2D

    device = str(resolve_device(settings.device))
    model, model_config = cache.get(model_name, device)
    return Engine2D(model, model_config, settings, device)


def segment_image(cache: ModelCache, model_name: str, settings, image: np.ndarray) -> np.ndarray:
    """Segment one 2D image with ``model_name`` (loaded through ``cache``) and ``settings``."""
    return _engine(cache, model_name, settings).segment(image)


def segment2d_job(cache: ModelCache, model_name: str, settings, image: np.ndarray):
    """Worker job returning ``(labels, precision)``: "int8" or "float32" (Engine2D.precision)."""

    def job(stop):
        engine = _engine(cache, model_name, settings)
        return engine.segment(image), engine.precision
        yield  # pragma: no cover - makes this a generator

    return job


def segment3d_job(model_name: str, volume, settings, out_path: Path):
    """Worker job returning ``(path, number of objects)``, or None when stopped."""

    def job(stop):
        from empanada_desktop.backend.events import Progress
        from empanada_desktop.backend.inference.engine3d import segment_volume

        path = yield from segment_volume(model_name, volume, settings, out_path, stop)
        if path is None:
            return None
        yield Progress(step=0, total=0, message="counting the objects found ...")
        return path, count_objects(path)

    return job


def blockwise_job(model_name: str, image, settings, out_path: Path, blocks):
    """Worker job segmenting block-wise into OME-Zarr labels (``backend.inference.blockwise``):
    returns ``(path, number of objects)``, or None when stopped (finished blocks are kept, and
    the same job run again resumes)."""

    def job(stop):
        from empanada_desktop.backend.inference.blockwise import segment_blockwise
        from empanada_desktop.core.volumes.zarr_io import read_attributes

        path = yield from segment_blockwise(model_name, image, settings, out_path, stop, blocks=blocks)
        if path is None:
            return None
        return path, int(read_attributes(path).get("empanada_desktop", {}).get("objects", 0))

    return job


def blockwise_input(image, path: Path | None, dataset: str | None, spacing):
    """What block-wise workers read: a lazy source that pickles by reopening its file (never a
    whole array sent to every worker), carrying the voxel size the user sees."""
    from empanada_desktop.core.volumes import open_image

    source = image
    if isinstance(image, np.ndarray) and path is not None and path.is_file():
        source = open_image(path, dataset)
    if spacing is not None and hasattr(source, "with_spacing") and spacing != source.spacing:
        source = source.with_spacing(spacing.voxel_size, spacing.unit)
    return source


def count_objects(path: Path) -> int:
    """Distinct non-zero labels in a label TIFF, read slice by slice (it may be larger than RAM)."""
    from empanada_desktop.core.imageio import read_image

    labels = read_image(path, mmap=True)
    stack = labels if labels.ndim == 3 else labels[np.newaxis]
    seen: set[int] = set()
    for plane in stack:
        seen.update(int(v) for v in np.unique(np.asarray(plane)))
    seen.discard(0)
    return len(seen)
