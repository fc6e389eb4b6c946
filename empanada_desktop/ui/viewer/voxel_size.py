"""The voxel size of the open image: shown in the status bar, corrected by the user, remembered.

The size comes from the file (``core.volumes`` reads OME-Zarr transformations, MRC headers, DM
calibrations, TIFF tags, HDF5/N5 attributes) and is often wrong or missing, so a click on it opens
a small dialog to correct it; the correction is remembered per image and travels with the
document (``Document.spacing``) into block-wise inference, whose OME-Zarr output records it. The
viewer's "z step" (slice thickness in xy pixels, for the xz and yz planes) follows it, and a
z step the user typed is remembered per image as before.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout,
                               QPushButton, QWidget)

from empanada_desktop.core.volumes.source import Spacing
from empanada_desktop.core.voxel_size import z_scale

log = logging.getLogger(__name__)

UNITS = ("nanometer", "micrometer", "angstrom", "millimeter", "pixel")
SHORT = {"nanometer": "nm", "micrometer": "µm", "angstrom": "Å", "millimeter": "mm", "pixel": "px"}


def describe(spacing: Spacing | None) -> str:
    if spacing is None:
        return "Voxel size unknown"
    z, y, x = spacing.voxel_size
    unit = SHORT.get(spacing.unit, spacing.unit)
    return f"Voxel z {z:g} × y {y:g} × x {x:g} {unit}"


class VoxelSizeDialog(QDialog):
    """Three sizes (z, y, x) and a unit."""

    def __init__(self, spacing: Spacing | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Voxel size")
        size = spacing.voxel_size if spacing else (1.0, 1.0, 1.0)
        self.spins = []
        form = QFormLayout(self)
        for axis, value in zip(("z (slice thickness)", "y", "x"), size, strict=True):
            spin = QDoubleSpinBox()
            spin.setDecimals(4)
            spin.setRange(0.0001, 1_000_000.0)
            spin.setValue(float(value))
            form.addRow(axis, spin)
            self.spins.append(spin)
        self.unit = QComboBox()
        self.unit.addItems(list(UNITS))
        unit = spacing.unit if spacing else "nanometer"
        if self.unit.findText(unit) < 0:
            self.unit.addItem(unit)
        self.unit.setCurrentText(unit)
        form.addRow("Unit", self.unit)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def spacing(self) -> Spacing:
        return Spacing(tuple(s.value() for s in self.spins), self.unit.currentText(), known=True, origin="user")


class VoxelSizeButton(QPushButton):
    """The status bar's voxel size; click to correct it. Keeps the viewer's z step in step."""

    def __init__(self, document, viewer, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.viewer = viewer
        self.settings = settings
        self._restoring = False
        self.setFlat(True)
        self.setToolTip("The voxel size the file records (z, y, x); click to correct it. It is written "
                        "into OME-Zarr labels and sets the z step of the xz and yz planes.")
        self.clicked.connect(lambda: self.edit())
        document.imageChanged.connect(self._image_changed)
        document.spacingChanged.connect(self._show)
        viewer.z_scale_spin.valueChanged.connect(self._remember_z_scale)
        self._show()

    def _key(self, kind: str) -> str | None:
        path = self.document.path
        if path is None:
            return None
        dataset = f":{self.document.dataset}" if self.document.dataset else ""
        return f"{kind}/{path.resolve().as_posix()}{dataset}"

    def _show(self) -> None:
        doc = self.document
        self.setVisible(doc.image is not None)
        self.setText(describe(doc.spacing) + (" (corrected)" if doc.spacing and doc.spacing.origin == "user" else ""))

    def _image_changed(self) -> None:
        doc = self.document
        saved = self.settings.value(self._key("voxel_size")) if self._key("voxel_size") else None
        if saved:
            try:
                *size, unit = str(saved).split(",")
                doc.spacing = Spacing(tuple(float(v) for v in size), unit, known=True, origin="user")
            except ValueError:
                log.info("ignoring a saved voxel size %r", saved)
        elif doc.spacing is None and doc.path is not None and doc.path.suffix.lower() in (".tif", ".tiff"):
            doc.spacing = _tiff_spacing(doc.path)  # set directly (demo, tests): read the tags
        self._restore_z_scale()
        self._show()

    def _restore_z_scale(self) -> None:
        """Entered once per image, else from the voxel size."""
        doc = self.document
        if doc.path is None or not doc.is_3d:
            return
        saved = self.settings.value(self._key("z_scale"))
        scale = float(saved) if saved else z_scale(doc.spacing.voxel_size if doc.spacing else None)
        self._restoring = True
        self.viewer.set_z_scale(scale)
        self._restoring = False

    def _remember_z_scale(self, value: float) -> None:
        if self.document.path is not None and self.document.is_3d and not self._restoring:
            self.settings.setValue(self._key("z_scale"), float(value))

    def edit(self, spacing: Spacing | None = None) -> bool:
        """Correct the voxel size (``spacing`` answers the dialog); remembered for this image."""
        doc = self.document
        if doc.image is None:
            return False
        if spacing is None:
            dialog = VoxelSizeDialog(doc.spacing, self.window())
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return False
            spacing = dialog.spacing()
        if self._key("voxel_size"):
            self.settings.setValue(self._key("voxel_size"),
                                   ",".join(f"{v:g}" for v in spacing.voxel_size) + f",{spacing.unit}")
        doc.set_spacing(spacing)
        if doc.is_3d:
            self.viewer.set_z_scale(z_scale(spacing.voxel_size))
        return True


def _tiff_spacing(path: Path) -> Spacing | None:
    from empanada_desktop.core.errors import UserError
    from empanada_desktop.core.volumes import open_image

    try:
        with open_image(path) as source:
            return source.spacing if source.spacing.known else None
    except (UserError, OSError) as error:
        log.info("no voxel size read from %s: %s", path, error)
        return None
