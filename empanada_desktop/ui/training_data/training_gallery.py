"""The training-set gallery ("annotated 12 / 16") and the focused view for painting one patch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QDialog, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QMessageBox, QPushButton,
                               QVBoxLayout, QWidget)

from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.training_data.save_set_dialog import SaveSetDialog, default_set_folder
from empanada_desktop.ui.training_data.training_set import Patch, TrainingSet
from empanada_desktop.ui.viewer.annotation import AnnotationController
from empanada_desktop.ui.viewer.annotation_panel import AnnotationPanel
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.labels_layer import PALETTE, colour_index
from empanada_desktop.ui.viewer.viewer import Viewer

log = logging.getLogger(__name__)
THUMB = 112


DEFAULT_VAL_SHARE = 0.2


def thumbnail(patch: Patch, size: int = THUMB) -> QPixmap:
    """The patch with its labels blended in, as a square pixmap."""
    gray = np.repeat(patch.image2d[..., None].astype(np.float32), 3, axis=2)
    colours = PALETTE[colour_index(patch.mask)]
    alpha = (colours[..., 3:4] / 255.0) * 0.5
    rgb = np.ascontiguousarray((gray * (1 - alpha) + colours[..., :3] * alpha).astype(np.uint8))
    h, w, _ = rgb.shape
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)


class FocusedPatchView(QDialog):
    """One patch, large, with the annotation tools; edits go straight into the patch."""

    edited = Signal()

    def __init__(self, training_set: TrainingSet, index: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.training_set = training_set
        self.document = Document(self)
        self.viewer = Viewer(self.document)
        self.controller = AnnotationController(self.document, self.viewer, self)
        self.panel = AnnotationPanel(self.controller)
        self.title = QLabel()
        self.done_button = QPushButton("Mark done (no objects)")
        self.done_button.setCheckable(True)
        self.done_button.setToolTip("Count this patch as annotated even if it shows no objects, "
                                    "and go to the next patch")
        self.done_button.toggled.connect(self._set_done)
        previous, following = QPushButton("< Previous"), QPushButton("Next >")
        previous.setToolTip("Previous patch (Alt+Left)")
        following.setToolTip("Next patch (Alt+Right)")
        previous.setShortcut("Alt+Left")
        following.setShortcut("Alt+Right")
        previous.clicked.connect(lambda: self.show_patch(self.index - 1))
        following.clicked.connect(lambda: self.show_patch(self.index + 1))
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close the patch editor; your painting is kept (Ctrl+W)")
        self.close_button.setShortcut("Ctrl+W")
        self.close_button.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        for widget in (previous, following, self.done_button):
            buttons.addWidget(widget)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        side = QVBoxLayout()
        side.addWidget(self.title)
        side.addWidget(self.panel, 1)
        side.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addLayout(side)
        layout.addWidget(self.viewer, 1)
        self.setWindowTitle("Annotate patch")
        self.controller.strokeFinished.connect(self._stroke_finished)
        self.controller.set_brush_size(5)
        self.index = -1
        self.show_patch(index)

    def show_patch(self, index: int) -> None:
        if not self.training_set.patches:
            return
        self.index = int(np.clip(index, 0, len(self.training_set.patches) - 1))
        patch = self.training_set.patches[self.index]
        self.document.set_image(patch.image)
        self.document.set_labels(patch.labels, copy=False)  # paint straight into the patch
        if patch.middle is not None:
            self.document.annotated_index = patch.middle
            self.document.set_index(patch.middle)
        self.controller.undo_stack.clear()
        self.controller.set_tool("brush")
        was = self.done_button.blockSignals(True)
        self.done_button.setChecked(patch.done)
        self.done_button.blockSignals(was)
        flip = " (flipbook: scroll to see the 5 slices; only the middle one is painted)" if patch.middle is not None else ""
        self.title.setText(f"<b>{patch.name}</b><br>patch {self.index + 1} of "
                           f"{len(self.training_set.patches)}{flip}")
        self.title.setWordWrap(True)

    def _set_done(self, done: bool) -> None:
        self.training_set.patches[self.index].done = done
        self._stroke_finished()
        if done and self.index + 1 < len(self.training_set.patches):
            self.show_patch(self.index + 1)  # marked done: on to the next patch

    def _stroke_finished(self) -> None:
        self.training_set.changed.emit()
        self.edited.emit()


class TrainingSetPanel(QWidget):
    """Gallery of picked patches with the annotated count, save and reopen."""

    savedTo = Signal(object)  # Path of the set saved or opened
    patchEdited = Signal()

    def __init__(self, training_set: TrainingSet, parent: QWidget | None = None):
        super().__init__(parent)
        self.training_set = training_set
        self.focused: FocusedPatchView | None = None
        self.count_label = QLabel()
        self.count_label.setStyleSheet("font-weight: bold;")
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListWidget.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.gallery.setSpacing(4)
        self.gallery.setToolTip("Double-click a patch to paint it")
        self.gallery.itemDoubleClicked.connect(lambda item: self.open_patch(self.gallery.row(item)))
        annotate = QPushButton("Annotate...")
        annotate.setToolTip("Open the selected patch in a focused view (Enter)")
        annotate.clicked.connect(lambda: self.open_patch(max(self.gallery.currentRow(), 0)))
        remove = QPushButton("Remove")
        remove.setToolTip("Remove the selected patch from the set")
        remove.clicked.connect(self._remove)
        self.val_spin = QDoubleSpinBox()
        self.val_spin.setRange(0.0, 0.5)
        self.val_spin.setSingleStep(0.05)
        self.val_spin.setDecimals(2)
        self.val_spin.setPrefix("validation share ")
        self.val_spin.setValue(DEFAULT_VAL_SHARE)
        self.val_spin.setToolTip("Share of annotated patches saved to <folder>_val for validation")
        self.val_note = QLabel()
        self.val_note.setWordWrap(True)
        self.val_spin.valueChanged.connect(lambda *_: self._update_val_note())
        save = QPushButton("Save set...")
        save.setToolTip("Save annotated patches in empanada's layout (appends to an existing set)")
        save.clicked.connect(self.choose_save)
        reopen = QPushButton("Open set...")
        reopen.setToolTip("Reopen a saved training set to continue annotating")
        reopen.clicked.connect(self.choose_open)
        row1, row2 = QHBoxLayout(), QHBoxLayout()
        row1.addWidget(annotate)
        row1.addWidget(remove)
        row2.addWidget(self.val_spin)
        row2.addWidget(save)
        row2.addWidget(reopen)
        layout = QVBoxLayout(self)
        layout.addWidget(self.count_label)
        layout.addWidget(self.gallery, 1)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(self.val_note)
        training_set.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        current = self.gallery.currentRow()
        self.gallery.clear()
        for i, patch in enumerate(self.training_set.patches):
            item = QListWidgetItem(QIcon(thumbnail(patch)), f"{i + 1}" + (" ✓" if patch.annotated else ""))
            item.setToolTip(patch.name)
            self.gallery.addItem(item)
        if 0 <= current < self.gallery.count():
            self.gallery.setCurrentRow(current)
        self.count_label.setText(self.training_set.count_text())
        self._update_val_note()

    def _update_val_note(self) -> None:
        annotated = sum(1 for p in self.training_set.patches if p.annotated)
        held = self.training_set.validation_count(self.val_spin.value(), annotated)
        if self.val_spin.value() == 0:
            self.val_note.setText("No patches held out: the finetune results then compare the "
                                  "models on training patches, which flatters the new model.")
        else:
            self.val_note.setText(
                f"{held} of {annotated} annotated patches will be held out to compare the models "
                "before and after finetuning; they are not trained on. More held out: a surer "
                "comparison, less to learn from.")

    def open_patch(self, index: int) -> FocusedPatchView | None:
        if not self.training_set.patches:
            QMessageBox.information(self, "Training set", "Pick some patches first (Patches panel).")
            return None
        if self.focused is None:
            self.focused = FocusedPatchView(self.training_set, index, self)
            self.focused.edited.connect(self.patchEdited)
            self.focused.resize(1100, 760)
        else:
            self.focused.show_patch(index)
        self.focused.show()
        self.focused.raise_()
        return self.focused

    def _remove(self) -> None:
        row = self.gallery.currentRow()
        if row >= 0:
            self.training_set.remove(row)

    def choose_save(self) -> SaveSetDialog:
        """Ask for the set's folder (it may not exist yet) and save there when accepted."""
        image = next((p.source for p in self.training_set.patches), None)
        dialog = SaveSetDialog(default_set_folder(self.training_set.root, image), self)
        dialog.accepted.connect(lambda: self.save(dialog.folder()) if dialog.folder() else None)
        dialog.open()
        return dialog

    def save(self, folder: str | Path) -> dict | None:
        try:
            counts = self.training_set.save(folder, val_fraction=self.val_spin.value())
        except (UserError, OSError) as error:
            show_error(self, "Cannot save the training set", user_message(error, folder))
            return None
        self.savedTo.emit(Path(folder))
        text = f"Saved {counts['train']} patches to {folder}"
        if counts["val"]:
            text += f" and {counts['val']} to {Path(folder).name}_val"
        if counts["skipped"]:
            text += f"; {counts['skipped']} not yet annotated were left out"
        if counts.get("suggestions"):
            text += f"; the suggested patches' positions and scores are in {counts['suggestions'].name}"
        QMessageBox.information(self, "Training set saved", text + ".")
        return counts

    def choose_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open training set", str(Path.home()))
        if folder:
            self.load(folder)

    def load(self, folder: str | Path) -> bool:
        try:
            self.training_set.load(folder)
        except UserError as error:
            QMessageBox.warning(self, "Cannot open the training set", str(error))
            return False
        self.savedTo.emit(Path(folder))
        return True


def demo_training_set(n: int = 8) -> TrainingSet:
    """Patches of the generated demo volume, half of them annotated (screens and demos)."""
    from empanada_desktop.core.opening import synthetic_em

    image, labels = synthetic_em((12, 256, 256))
    training_set = TrainingSet()
    rng = np.random.default_rng(1)
    patches = []
    for i in range(n):
        z, r, c = int(rng.integers(2, 10)), int(rng.integers(0, 160)), int(rng.integers(0, 160))
        mask = labels[z, r:r + 96, c:c + 96].copy() if i % 2 == 0 else np.zeros((96, 96), np.int32)
        patches.append(Patch("demo", f"demo-xy{z:04d}-r{r}-c{c}-s96", image[z, r:r + 96, c:c + 96].copy(),
                             mask, {"plane": "xy", "index": z, "row": r, "col": c, "size": 96}))
    training_set.add(patches)
    return training_set


def _gallery_screen():
    panel = TrainingSetPanel(demo_training_set())
    panel._keep = panel.training_set
    return panel, (560, 520)


def _focused_screen():
    training_set = demo_training_set()
    view = FocusedPatchView(training_set, 0)
    view._keep = training_set
    return view, (1100, 720)


register_screen("training_set_gallery", _gallery_screen)
register_screen("focused_patch_view", _focused_screen)

if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    app = QApplication([])
    configure_pyqtgraph()
    widget, size = _gallery_screen()
    widget.resize(*size)
    widget.show()
    app.exec()
