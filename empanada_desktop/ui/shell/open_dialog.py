"""Opening what the user chose into the window's document: any format ``core.volumes`` reads,
lazily; the image inside a container with several (HDF5, Zarr, N5); a folder of TIFF slices as
one volume or as unrelated 2D images.

Used by File > Open, drag and drop and ``empanada-desktop FILE`` through
``MainWindow.open_path``. Numpy-backed sources (TIFF memory maps, PNG, JPEG, MRC, DM) go to the
document as numpy arrays, as before; chunked ones (Zarr, N5, HDF5, compressed TIFF, TIFF
folders) as the lazy ``ImageSource`` itself, so a slice on screen reads only its chunks.
Dialogs take their answers as arguments (``dataset=``, ``folder_as=``) so tests never block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QMessageBox, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from empanada_desktop.core import opening
from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.core.volumes import DatasetInfo, list_datasets, open_image, split_dataset
from empanada_desktop.core.volumes.opening import CONTAINER_SUFFIXES, HDF5_SUFFIXES
from empanada_desktop.core.volumes.source import ImageSource
from empanada_desktop.ui.shell.screen_registry import register_screen

log = logging.getLogger(__name__)

# File > Open's filter: every format a file (not a folder) can have.
OPEN_FILTER = (
    "Images and volumes (*.tif *.tiff *.png *.jpg *.jpeg *.h5 *.hdf5 *.hdf *.mrc *.rec *.st *.ali "
    "*.map *.dm3 *.dm4);;TIFF (*.tif *.tiff);;HDF5 (*.h5 *.hdf5 *.hdf);;MRC (*.mrc *.rec *.st *.ali "
    "*.map);;DigitalMicrograph (*.dm3 *.dm4);;All files (*)"
)
Report = Callable[[str, str], None]  # (title, message): the window's error box


def is_container(path: Path) -> bool:
    """A file or folder that may hold several images: HDF5, Zarr, N5."""
    from empanada_desktop.core.volumes.n5 import is_n5_folder
    from empanada_desktop.core.volumes.zarr_io import is_zarr_folder

    suffix = path.suffix.lower()
    if path.is_dir():
        return suffix in CONTAINER_SUFFIXES or is_zarr_folder(path) or is_n5_folder(path)
    return suffix in HDF5_SUFFIXES


def location(path: Path, dataset: str | None) -> str:
    """How a source is written on the command line and in the recent files: ``file.h5:/raw``."""
    return f"{path}:{dataset}" if dataset else str(path)


class DatasetDialog(QDialog):
    """Which image of a container to open: its datasets with shape and type."""

    def __init__(self, path: Path, datasets: list[DatasetInfo], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose the image to open")
        self.list = QTreeWidget()
        self.list.setRootIsDecorated(False)
        self.list.setHeaderLabels(["Image", "Shape (z × y × x)", "Type", ""])
        for info in datasets:
            shape = " × ".join(str(n) for n in info.shape)
            item = QTreeWidgetItem([info.name or "/", shape, info.dtype,
                                    "multiscale" if info.multiscale else ""])
            item.setData(0, 256, info.name)  # 256 = Qt.UserRole
            self.list.addTopLevelItem(item)
        for column in range(4):
            self.list.resizeColumnToContents(column)
        if datasets:
            self.list.setCurrentItem(self.list.topLevelItem(_likely_image(datasets)))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.list.itemDoubleClicked.connect(lambda *_: self.accept())
        layout = QVBoxLayout(self)
        note = QLabel(f"{path.name} holds {len(datasets)} images. Choose the one to open:")
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addWidget(self.list, 1)
        layout.addWidget(buttons)
        self.resize(560, 320)

    def chosen(self) -> str | None:
        item = self.list.currentItem()
        return item.data(0, 256) if item is not None else None


def _is_ome_zarr_image(datasets: list[DatasetInfo]) -> bool:
    """An OME-Zarr image at the top of the container (its other entries are its labels and such):
    open it without asking, as napari does."""
    return any(info.name in ("", "/") and info.multiscale for info in datasets)


_CANCELLED = object()


def _which_dataset(file: Path, dataset: str | None,
                   choose_dataset: Callable[[Path, list[DatasetInfo]], str | None] | None):
    """The image to open inside ``file``: ``dataset`` when given; else, for a container holding
    several images (an OME-Zarr image opens without asking), the answer of ``choose_dataset``
    (``_CANCELLED`` when the user cancels); None lets the reader take the only one or say which
    there are."""
    if dataset is not None or choose_dataset is None or not is_container(file):
        return dataset
    infos = list_datasets(file)
    if len(infos) <= 1 or _is_ome_zarr_image(infos):
        return None
    chosen = choose_dataset(file, infos)
    return _CANCELLED if chosen is None else chosen


def _likely_image(datasets: list[DatasetInfo]) -> int:
    """Preselect the largest non-label image (labels are often stored next to the raw data)."""
    def score(info: DatasetInfo):
        labelish = any(word in info.name.lower() for word in ("label", "mask", "seg"))
        return (not labelish, int(np.prod(info.shape)))

    return max(range(len(datasets)), key=lambda i: score(datasets[i]))


def ask_dataset(parent: QWidget | None, path: Path, datasets: list[DatasetInfo]) -> str | None:
    dialog = DatasetDialog(path, datasets, parent)
    return dialog.chosen() if dialog.exec() == QDialog.DialogCode.Accepted else None


def ask_folder_kind(parent: QWidget | None, folder: Path, count: int) -> str | None:
    """'volume' (slices of one stack), 'stack' (unrelated 2D images) or None (cancelled)."""
    box = QMessageBox(parent)
    box.setWindowTitle("Open a folder")
    box.setText(f"{folder.name} holds {count} TIFF images. Open them as:")
    volume = box.addButton("One volume (its slices)", QMessageBox.ButtonRole.AcceptRole)
    stack = box.addButton("Separate 2D images", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return {id(volume): "volume", id(stack): "stack"}.get(id(box.clickedButton()))


def open_into_document(document, path: str | os.PathLike[str], report: Report, *,
                       parent: QWidget | None = None, dataset: str | None = None,
                       folder_as: str | None = None,
                       choose_dataset: Callable[[Path, list[DatasetInfo]], str | None] | None = None,
                       choose_folder_kind: Callable[[Path, int], str | None] | None = None) -> str | None:
    """Open ``path`` (``file.h5:/raw`` too) into ``document``; returns what was opened, written
    as ``location``, or None (cancelled, or a problem shown through ``report``).

    ``folder_as`` ("volume" or "stack") answers the folder question; ``dataset`` the dataset one.
    """
    file, inline = split_dataset(path)
    dataset = dataset or inline
    choose_dataset = choose_dataset or (lambda p, infos: ask_dataset(parent, p, infos))
    choose_folder_kind = choose_folder_kind or (lambda p, n: ask_folder_kind(parent, p, n))
    try:
        if not file.exists():
            raise UserError(f"{file} does not exist; choose another file.")
        if file.is_dir() and not is_container(file):
            tiffs = [p for p in opening.image_files(file) if p.suffix.lower() in (".tif", ".tiff")]
            kind = folder_as or (choose_folder_kind(file, len(tiffs)) if len(tiffs) > 1 else "stack")
            if kind is None:
                return None
            if kind == "stack":
                stack, names, shapes = opening.read_folder_stack(file)
                document.set_image(stack, file, is_stack=True, stack_names=names, stack_shapes=shapes)
                return str(file)
        dataset = _which_dataset(file, dataset, choose_dataset)
        if dataset is _CANCELLED:
            return None
        source = open_image(file, dataset)
        show_source(document, source, file)
    except UserError as error:
        report("Cannot open image", str(error))
        return None
    except OSError as error:
        report("Cannot open image", user_message(error, file))
        return None
    except Exception as error:  # noqa: BLE001 - a reader's own error on a damaged file
        log.exception("opening %s failed", file)
        report("Cannot open image", f"Cannot read {file}: {error}. The file may be damaged or not "
               "an image; copy or save it again.")
        return None
    return location(file, source.dataset)


def open_labels_source(path: str | os.PathLike[str],
                       choose_dataset: Callable[[Path, list[DatasetInfo]], str | None] | None = None):
    """Labels from any format the image can be: a TIFF, PNG or JPEG into memory (as before);
    OME-Zarr labels (``cell.zarr/labels/mito``), Zarr, N5, HDF5 (``file.h5:/labels``) and MRC lazily,
    as a source the viewer reads slice by slice; a container with several images asks which one
    (``choose_dataset``; None back: nothing opened). Raises UserError for a non-integer image."""
    file, dataset = split_dataset(path)
    if not file.is_dir() and file.suffix.lower() in opening.IMAGE_SUFFIXES and dataset is None:
        return opening.read_labels(file)
    dataset = _which_dataset(file, dataset, choose_dataset)
    if dataset is _CANCELLED:
        return None
    source = open_image(file, dataset)
    if not np.issubdtype(source.dtype, np.integer):
        source.close()
        raise UserError(f"{location(file, source.dataset)} holds {source.dtype} values; labels must hold "
                        "whole numbers (0 = background, 1..N = objects). Choose a labels image.")
    return source


def show_source(document, source: ImageSource, path: Path) -> None:
    """Put an opened source on the document: numpy-backed ones as their array (memory maps stay
    memory maps), chunked ones as the lazy source itself."""
    if 0 in source.shape:
        raise UserError(f"{path} is empty (shape {source.shape}); choose another file.")
    array = source.numpy_array
    image = array if array is not None else source
    if array is None and source.ndim == 3:
        source[source.shape[0] // 2]  # the slice shown first: a damaged file fails here, not on screen
    spacing = source.spacing if source.spacing.known else None
    document.set_image(image, path, dataset=source.dataset, spacing=spacing)


def _dataset_dialog_screen():
    datasets = [DatasetInfo("/volumes/raw", (1024, 4096, 4096), "uint8"),
                DatasetInfo("/volumes/labels/mito", (1024, 4096, 4096), "uint64"),
                DatasetInfo("/volumes/raw_s2", (256, 1024, 1024), "uint8")]
    return DatasetDialog(Path("cell_fib-sem.h5"), datasets), (560, 320)


register_screen("open_dataset_dialog", _dataset_dialog_screen)
