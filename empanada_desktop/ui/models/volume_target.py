"""Where "Segment volume" runs and where its labels go (part of the inference panel's 3D box).

- Run on *this computer*: TIFF output uses the single-process engine (small volumes); OME-Zarr
  output runs block-wise on an embedded Dask ``LocalCluster`` sized to the computer.
- Run on *a Dask cluster (address)*: block-wise through ``tcp://host:port`` (``--scheduler`` on
  the command line); the output is OME-Zarr, on a file system the workers share.
- Output: OME-Zarr labels (default inside an OME-Zarr image as ``labels/<model>``, else a
  separate ``.zarr`` beside the image) or TIFF (small volumes, in the app home). An empty path
  box means the default, shown greyed in it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QWidget)

from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.volumes.labels_output import default_labels_output, suggested_kind

ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://\S+$|^[\w.\-\[\]:]+:\d+$")


class VolumeTarget(QWidget):
    """The "Run on" and output rows. ``model_name()`` gives the chosen model (for the default name).

    ``local_options`` are extra ``ClusterConfig`` settings for the embedded cluster (e.g.
    ``{"processes": False}`` runs its workers as threads of the app).
    """

    def __init__(self, document, model_name: Callable[[], str | None], parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self._model_name = model_name
        self.local_options: dict = {}
        self.where = QComboBox()
        self.where.addItem("this computer", "local")
        self.where.addItem("a Dask cluster (address)", "cluster")
        self.where.setToolTip("This computer: one process for TIFF output, else an embedded Dask "
                              "cluster sized to its cores, memory and GPUs. A Dask cluster: its "
                              "workers need empanada-desktop, the model and the files at the same paths.")
        self.address = QLineEdit()
        self.address.setPlaceholderText("tcp://host:8786")
        self.address.setToolTip("The Dask scheduler's address (as dask-scheduler prints it)")
        self.kind = QComboBox()
        self.kind.addItem("OME-Zarr labels (any size)", "zarr")
        self.kind.addItem("TIFF (small volumes)", "tiff")
        self.kind.setToolTip("OME-Zarr: block by block, resumable, shown as it is written, opens in "
                             "napari, neuroglancer and webKnossos. TIFF: one process, whole volume.")
        self.output = QLineEdit()
        self.output.setToolTip("Where the labels are written; empty: the default shown here")
        self.browse = QPushButton("...")
        self.browse.setToolTip("Choose where to save the labels")
        self.browse.setMaximumWidth(32)
        self.block_size = QLineEdit()
        self.block_size.setPlaceholderText("automatic")
        self.block_size.setToolTip("Block size z,y,x in voxels (e.g. 64,1024,1024); smaller blocks "
                                   "need less memory per worker")
        output_row = QHBoxLayout()
        output_row.setContentsMargins(0, 0, 0, 0)
        output_row.addWidget(self.output, 1)
        output_row.addWidget(self.browse)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.addRow("Run on", self.where)
        self.form.addRow("Scheduler", self.address)
        self.form.addRow("Labels as", self.kind)
        self.form.addRow("Save to", output_row)
        self.form.addRow("Block size", self.block_size)
        self.where.currentIndexChanged.connect(lambda *_: self._where_changed())
        self.kind.currentIndexChanged.connect(lambda *_: self._kind_changed())
        self.browse.clicked.connect(lambda: self.choose_output())
        document.imageChanged.connect(self.image_changed)
        self.image_changed()

    # -- state -------------------------------------------------------------------------------
    def image_changed(self) -> None:
        """A new image: the output kind suited to it, the default path, no typed path."""
        doc = self.document
        self.output.clear()
        if doc.image is not None:
            nbytes = int(np.prod(doc.shape3d)) * np.dtype(doc.image.dtype).itemsize
            kind = suggested_kind(getattr(doc.image, "format", None), nbytes)
            self.kind.setCurrentIndex(self.kind.findData(kind))
        self._where_changed()

    def _where_changed(self) -> None:
        cluster = self.where.currentData() == "cluster"
        self.form.setRowVisible(self.address, cluster)
        if cluster:
            self.kind.setCurrentIndex(self.kind.findData("zarr"))
        self.kind.model().item(self.kind.findData("tiff")).setEnabled(not cluster)
        self._kind_changed()

    def _kind_changed(self) -> None:
        zarr = self.kind.currentData() == "zarr"
        self.form.setRowVisible(self.block_size, zarr)
        text = self.output.text().strip()
        if text and Path(text).suffix.lower() in (".tif", ".tiff", ".zarr"):
            wanted = ".zarr" if zarr else ".tif"
            if not text.lower().endswith(wanted):
                self.output.setText(str(Path(text).with_suffix(wanted)))
        self.refresh_default()

    def refresh_default(self) -> None:
        self.output.setPlaceholderText(str(self.default_output()) if self.document.image is not None else "")

    def default_output(self) -> Path:
        from empanada_desktop.core.paths import subdir

        doc = self.document
        return default_labels_output(doc.path, doc.dataset, getattr(doc.image, "format", None),
                                     self._model_name() or "model", self.kind.currentData(), subdir("inference"))

    # -- what the run needs ------------------------------------------------------------------
    @property
    def blockwise(self) -> bool:
        return self.kind.currentData() == "zarr"

    def output_path(self) -> Path:
        text = self.output.text().strip()
        return Path(text).expanduser() if text else self.default_output()

    def cluster_config(self):
        """The ``ClusterConfig`` for the chosen place. Raises ConfigError for a bad address."""
        from empanada_desktop.backend.inference.cluster import ClusterConfig

        if self.where.currentData() == "cluster":
            address = self.address.text().strip()
            if not ADDRESS.match(address):
                raise ConfigError(
                    f"Scheduler address {address!r} is not an address; enter it as dask-scheduler "
                    "prints it, e.g. tcp://10.0.0.5:8786" if address else
                    "Enter the Dask scheduler's address, e.g. tcp://10.0.0.5:8786")
            return ClusterConfig(scheduler=address)
        return ClusterConfig(**self.local_options)

    def block_settings(self):
        """``BlockwiseSettings`` with the block size typed (automatic when empty)."""
        from empanada_desktop.backend.inference.blockwise import BlockwiseSettings

        text = self.block_size.text().strip()
        block = None
        if text:
            try:
                block = tuple(int(v) for v in re.split(r"[,x ]+", text) if v)
            except ValueError:
                block = ()
            if len(block) != 3 or min(block) < 1:
                raise ConfigError(f"Block size {text!r}: give three whole numbers z,y,x, e.g. 64,1024,1024")
        return BlockwiseSettings(block_size=block, cluster=self.cluster_config())

    def choose_output(self) -> None:
        if self.blockwise:
            path = QFileDialog.getSaveFileName(self, "Save labels as OME-Zarr", str(self.output_path()),
                                               "OME-Zarr (*.zarr)")[0]
            if path and not path.endswith(".zarr") and "/labels/" not in path:
                path += ".zarr"
        else:
            path = QFileDialog.getSaveFileName(self, "Save labels as TIFF", str(self.output_path()),
                                               "TIFF (*.tif *.tiff)")[0]
        if path:
            self.output.setText(path)
