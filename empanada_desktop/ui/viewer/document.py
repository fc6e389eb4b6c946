"""What is open in the window: an image (2D or 3D, possibly memory-mapped) and its labels.

The document is the one model the viewer, the annotation tools and the patch picker mirror. Only
the slice on screen is ever read from the image, so a volume larger than RAM stays on disk: the
image is a numpy array (possibly memory-mapped) or a lazy ``core.volumes.ImageSource`` (Zarr, N5,
HDF5, ...), which reads only the chunks a slice touches.
Labels are an int32 array of the image's shape, created on the first edit with ``np.zeros``
(the operating system only backs the pages that are written). Labels still being written by a
job (an OME-Zarr) are shown lazily (``lazy_labels``) and read into memory on the first edit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from empanada_desktop.core.errors import ImageReadError, UserError
from empanada_desktop.core.volumes.pyramid import level_key
from empanada_desktop.core.volumes.source import ImageSource, Spacing

log = logging.getLogger(__name__)

PLANES = ("xy", "xz", "yz")
# Edits are remembered per block of this many voxels along each axis, for autosave.
CHUNK = 64


class Document(QObject):
    """The image, its labels and the slice on screen.

    Attributes:
        image: (H, W) or (Z, H, W) array, possibly a read-only memory map.
        labels: int32 array of the image's shape, or None before anything was painted.
        path: where the image came from (file or folder), or None.
        plane: "xy", "xz" or "yz"; the axis that ``index`` runs along is z, y or x.
        index: the slice on screen.
        is_stack: True for a folder of unrelated 2D images ("2D stack"): only xy makes sense.
        annotated_index: if set, only this slice may be painted (flipbooks: the middle slice).
    """

    imageChanged = Signal()
    labelsChanged = Signal()  # labels replaced or edited in bulk
    sliceChanged = Signal()  # plane or index changed
    labelsEdited = Signal(object)  # a 3D (z0, z1, y0, y1, x0, x1) box of the volume changed
    spacingChanged = Signal()  # voxel size or unit read from the file or corrected
    readFailed = Signal(str)  # a slice of a lazy image could not be read (shown as zeros)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.image: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.path: Path | None = None
        self.labels_path: Path | None = None
        self.plane = "xy"
        self.index = 0
        self.is_stack = False
        self.stack_names: list[str] = []
        self.stack_shapes: list[tuple[int, int]] | None = None  # each stacked image's own size
        self.annotated_index: int | None = None
        self.edited_chunks: set[tuple[int, int, int]] = set()
        self.dataset: str | None = None  # the image inside a container file (HDF5, Zarr, N5)
        self.spacing: Spacing | None = None  # voxel size (z, y, x) and unit; None: unknown
        self.lazy_labels = None  # read-only labels array-like shown while ``labels`` is None

    # -- image -------------------------------------------------------------------------------
    def set_image(self, image: np.ndarray, path: str | Path | None = None, *, is_stack: bool = False,
                  stack_names: list[str] | None = None,
                  stack_shapes: list[tuple[int, int]] | None = None, dataset: str | None = None,
                  spacing: Spacing | None = None) -> None:
        """Show a new image; drops the labels (the caller saves them first if wanted).

        ``image`` is a numpy array or a lazy array-like (``ImageSource``) read slice by slice.
        """
        if not isinstance(image, np.ndarray) and image.ndim == 2:
            image = np.asarray(image[...])  # one slice: the viewer reads all of it anyway
        if image.ndim not in (2, 3) or 0 in image.shape:
            raise ImageReadError(
                f"{path or 'The image'} has shape {image.shape}; open a 2D image or a 3D stack "
                "(Z, H, W) with at least one pixel."
            )
        self.image = image
        self.path = Path(path) if path is not None else None
        self.labels = None
        self.lazy_labels = None
        self.labels_path = None
        self.dataset = dataset
        self.spacing = spacing
        self.is_stack = is_stack
        self.stack_names = list(stack_names or [])
        self.stack_shapes = [tuple(s) for s in stack_shapes] if stack_shapes else None
        self.plane = "xy"
        self.index = self.n_slices(self.plane) // 2 if image.ndim == 3 and not is_stack else 0
        self.annotated_index = None
        self.edited_chunks = set()
        self.imageChanged.emit()
        self.spacingChanged.emit()
        self.labelsChanged.emit()
        self.sliceChanged.emit()

    def set_spacing(self, spacing: Spacing | None) -> None:
        """Replace the voxel size (the file's was wrong or missing)."""
        self.spacing = spacing
        self.spacingChanged.emit()

    @property
    def is_3d(self) -> bool:
        return self.image is not None and self.image.ndim == 3

    @property
    def shape3d(self) -> tuple[int, int, int]:
        """The image shape with a leading 1 for 2D images."""
        if self.image is None:
            return (0, 0, 0)
        return tuple(self.image.shape) if self.image.ndim == 3 else (1, *self.image.shape)

    def available_planes(self) -> tuple[str, ...]:
        return PLANES if self.is_3d and not self.is_stack else ("xy",)

    def n_slices(self, plane: str | None = None) -> int:
        z, h, w = self.shape3d
        return {"xy": z, "xz": h, "yz": w}[plane or self.plane]

    def set_plane(self, plane: str) -> None:
        if plane not in self.available_planes():
            raise ValueError(f"plane {plane!r} is not available for this image")
        if plane != self.plane:
            self.plane = plane
            self.index = self.n_slices() // 2
            self.sliceChanged.emit()

    def set_index(self, index: int) -> None:
        index = int(np.clip(index, 0, max(self.n_slices() - 1, 0)))
        if index != self.index:
            self.index = index
            self.sliceChanged.emit()

    def _slicer(self, plane: str | None = None, index: int | None = None) -> tuple:
        plane = plane or self.plane
        index = self.index if index is None else index
        return {"xy": (index, slice(None), slice(None)),
                "xz": (slice(None), index, slice(None)),
                "yz": (slice(None), slice(None), index)}[plane]

    def _view3d(self, array: np.ndarray) -> np.ndarray:
        return array if array.ndim == 3 else array[np.newaxis]

    def current_slice(self) -> np.ndarray:
        """The 2D image on screen (reads only this slice of a memory-mapped volume)."""
        if self.image is None:
            raise ValueError("no image is open")
        return self.slice_at(self.plane, self.index)

    def slice_at(self, plane: str, index: int) -> np.ndarray:
        if isinstance(self.image, np.ndarray):
            return np.asarray(self._view3d(self.image)[self._slicer(plane, index)])
        return self._read(self.image, self._slicer(plane, index), plane, index, self.slice_shape(plane))

    def slice_shape(self, plane: str | None = None) -> tuple[int, int]:
        """(rows, columns) of a full-resolution slice of ``plane`` (default: the one on screen)."""
        z, h, w = self.shape3d
        return {"xy": (h, w), "xz": (z, w), "yz": (z, h)}[plane or self.plane]

    def levels(self) -> tuple:
        """The image's multiscale pyramid, full resolution first (just the image when it has none)."""
        if isinstance(self.image, ImageSource) and self.image.ndim == 3:
            return tuple(level for level in self.image.levels if level.ndim == 3)
        return (self.image,) if self.image is not None else ()

    def level_slice(self, level: int) -> np.ndarray:
        """The slice on screen read from pyramid level ``level`` (0: full resolution); a coarser
        level reads only its own, smaller chunks."""
        if level == 0:
            return self.current_slice()
        source = self.levels()[level]
        key = level_key(self.shape3d, source.shape, self.plane, self.index)
        shape = tuple(n for n, k in zip(source.shape, key, strict=True) if isinstance(k, slice))
        return self._read(source, key, self.plane, self.index, shape)

    def _read(self, source, key: tuple, plane: str, index: int, shape: tuple[int, int]) -> np.ndarray:
        try:
            return np.asarray(source[key])
        except Exception as error:  # noqa: BLE001 - a damaged chunk must not end the app
            log.warning("cannot read %s slice %d of %s: %s", plane, index, self.path, error)
            self.readFailed.emit(f"Cannot read {plane} slice {index} of {self.path}: {error}")
            return np.zeros(shape, self.image.dtype)

    def value_at(self, z: int, y: int, x: int):
        """The full-resolution value of voxel (z, y, x) (reads one pixel), or None if unreadable."""
        if isinstance(self.image, np.ndarray):
            return self._view3d(self.image)[z, y, x]
        try:
            return np.asarray(self.image[(z, y, x) if self.image.ndim == 3 else (y, x)])[()]
        except Exception as error:  # noqa: BLE001 - the readout shows "?" instead
            log.debug("cannot read voxel %s of %s: %s", (z, y, x), self.path, error)
            return None

    # -- labels ------------------------------------------------------------------------------
    def set_labels(self, labels: np.ndarray | None, path: str | Path | None = None, *,
                   copy: bool = True) -> None:
        """Replace the labels (None clears them). Any integer dtype is accepted, kept as int32.

        With ``copy=False`` an int32 array is used as is, so edits show up in it (patch views).
        """
        if labels is not None and not isinstance(labels, np.ndarray):
            self._check_labels(labels, path)
            self.labels = None
            self.lazy_labels = labels  # shown lazily; read into memory on the first edit
            self.labels_path = Path(path) if path is not None else None
            self.edited_chunks = set()
            self.labelsChanged.emit()
            return
        if labels is not None:
            self._check_labels(labels, path)
            if copy or labels.dtype != np.int32:
                labels = np.array(labels, dtype=np.int32)  # writable, never the memory map
        self.lazy_labels = None
        self.labels = labels
        self.labels_path = Path(path) if path is not None else None
        self.edited_chunks = set()
        self.labelsChanged.emit()

    def _check_labels(self, labels, path) -> None:
        if labels is not None:
            if self.image is None:
                raise ImageReadError("Open an image before opening labels onto it.")
            if tuple(labels.shape) != tuple(self.image.shape):
                raise ImageReadError(
                    f"The labels {path or ''} have shape {tuple(labels.shape)} but the image has "
                    f"shape {tuple(self.image.shape)}; open the labels made for this image."
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise ImageReadError(
                    f"The labels {path or ''} are of type {labels.dtype}; labels must be whole "
                    "numbers (0 = background, 1..N = objects)."
                )

    def has_labels(self) -> bool:
        return self.labels is not None or self.lazy_labels is not None

    def labels_array(self):
        """The labels to save or export: the painted array, or the lazy labels (None if none)."""
        return self.labels if self.labels is not None else self.lazy_labels

    def refresh_lazy_labels(self) -> None:
        """Show what a job wrote into the lazy labels since the last look."""
        if self.lazy_labels is not None and self.labels is None:
            self.labelsChanged.emit()

    def ensure_labels(self) -> np.ndarray:
        """The labels array, created empty (zeros, lazily backed by the OS) if needed."""
        if self.labels is None:
            if self.image is None:
                raise ValueError("no image is open")
            self.labels = self._new_labels()
            self.lazy_labels = None
            self.labelsChanged.emit()
        return self.labels

    def _new_labels(self) -> np.ndarray:
        """Writable labels, from the lazy labels when there are some (read in slabs)."""
        shape = tuple(self.image.shape)
        size = int(np.prod(shape)) * 4
        try:
            if self.lazy_labels is not None:
                import psutil

                if size > psutil.virtual_memory().available // 2:
                    raise MemoryError
            labels = np.zeros(shape, dtype=np.int32)
            if self.lazy_labels is not None:
                step = max(1, 64_000_000 // max(1, int(np.prod(shape[1:]))))
                for z in range(0, shape[0] if len(shape) == 3 else 1, step):
                    if len(shape) == 3:
                        labels[z:z + step] = np.asarray(self.lazy_labels[z:z + step])
                    else:
                        labels[...] = np.asarray(self.lazy_labels[...])
        except MemoryError:
            raise UserError(
                f"The labels of this image ({size / 1e9:.1f} GB) do not fit in memory for painting; "
                "pick patches (Patches panel) and paint them in the Training set panel instead."
            ) from None
        return labels

    def current_labels(self) -> np.ndarray | None:
        """The labels of the slice on screen (a writable view), or None if there are none.

        Lazy labels give a read-only copy of the slice (None while it cannot be read)."""
        if self.labels is None:
            if self.lazy_labels is not None:
                try:
                    lazy = self.lazy_labels
                    if lazy.ndim == 2:
                        return np.asarray(lazy[...], dtype=np.int32)
                    return np.asarray(lazy[self._slicer()], dtype=np.int32)
                except Exception as error:  # noqa: BLE001 - a chunk being written; next refresh
                    log.debug("lazy labels not readable yet: %s", error)
            return None
        return self._view3d(self.labels)[self._slicer()]

    def labels3d(self) -> np.ndarray:
        """The labels as (Z, H, W) (a view with Z = 1 for 2D images), created if needed."""
        return self._view3d(self.ensure_labels())

    def labels_view(self) -> np.ndarray:
        """A writable 2D view of the labels on screen, creating the labels if needed."""
        return self._view3d(self.ensure_labels())[self._slicer()]

    def set_slice_labels(self, label2d: np.ndarray) -> None:
        """Write a whole 2D label image into the slice on screen."""
        view = self.labels_view()
        if label2d.shape != view.shape:
            raise ValueError(f"labels of shape {label2d.shape} do not fit the slice {view.shape}")
        view[...] = label2d
        self.mark_edited((0, view.shape[0], 0, view.shape[1]))

    def box3d(self, box2d: tuple[int, int, int, int], plane: str | None = None,
              index: int | None = None) -> tuple[int, int, int, int, int, int]:
        """Turn a (row0, row1, col0, col1) box of a slice into a (z0, z1, y0, y1, x0, x1) box."""
        plane = plane or self.plane
        index = self.index if index is None else index
        r0, r1, c0, c1 = (int(v) for v in box2d)
        if plane == "xy":
            return (index, index + 1, r0, r1, c0, c1)
        if plane == "xz":
            return (r0, r1, index, index + 1, c0, c1)
        return (r0, r1, c0, c1, index, index + 1)

    def mark_edited(self, box2d: tuple[int, int, int, int], plane: str | None = None,
                    index: int | None = None) -> None:
        """Record that a box of a slice was changed, and tell the views."""
        self.mark_edited3d(self.box3d(box2d, plane, index))

    def mark_edited3d(self, box3d: tuple[int, int, int, int, int, int]) -> None:
        """Record that a (z0, z1, y0, y1, x0, x1) box of the labels changed, and tell the views."""
        z0, z1, y0, y1, x0, x1 = (int(v) for v in box3d)
        if z1 <= z0 or y1 <= y0 or x1 <= x0:
            return
        for cz in range(z0 // CHUNK, (z1 - 1) // CHUNK + 1):
            for cy in range(y0 // CHUNK, (y1 - 1) // CHUNK + 1):
                for cx in range(x0 // CHUNK, (x1 - 1) // CHUNK + 1):
                    self.edited_chunks.add((cz, cy, cx))
        self.labelsEdited.emit((z0, z1, y0, y1, x0, x1))

    def can_paint(self) -> bool:
        return self.image is not None and (
            self.annotated_index is None or (self.plane == "xy" and self.index == self.annotated_index)
        )

    @property
    def display_name(self) -> str:
        if self.path is None:
            return "untitled"
        return self.path.name


def demo_document() -> Document:
    """A Document on the demo volume (or a generated one if the demo data is not there)."""
    from empanada_desktop.core.opening import demo_image

    document = Document()
    image, path = demo_image()
    document.set_image(image, path)
    return document
