"""Wizard page for "Train a new model": architecture, encoder, initialisation, classes.

What it chooses goes into ``WizardState.new_model`` (the ``TrainConfig`` fields of a new model);
the data, settings, run and results pages then work as for finetuning.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from empanada_desktop.backend.finetune.train_config import (
    ARCHITECTURE_CHOICES,
    CEM_FILE_NAME,
    CEM_SOURCE,
    ENCODER_CHOICES,
    TrainConfig,
    imported_cem_path,
)
from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.wizard.page_ids import PAGE_DATA
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)

ARCHITECTURE_HELP = {
    "PanopticDeepLabPR": "MitoNet_v1's architecture: Panoptic-DeepLab with a PointRend head. "
                         "Patch sizes in multiples of 16. The usual choice.",
    "PanopticBiFPNPR": "MitoNet_v1_mini's: BiFPN decoders, about half the parameters with ResNet-50 and "
                       "faster. Patch sizes in multiples of 128.",
}
ENCODER_HELP = ("ResNet-50 is MitoNet's encoder and the only one with CEM1.5M weights; ResNet-18 and -34 "
                "are smaller and faster (and train from random weights).")
INIT_HELP = ("CEM1.5M weights (a ResNet-50 trained on 1.5 million unlabelled EM images) make a new model "
             "learn faster and generalise better than random weights. The file is imported once; "
             "nothing is downloaded.")
CLASSES_HELP = ("One class: masks hold objects 1..N. Several: masks hold class x label divisor + "
                "object number (semantic classes: class x divisor). Every mask is checked against "
                "these classes before training.")


def _help(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #666;")
    return label


class NewModelPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("New model")
        self.setSubTitle("The kind of model to train from your labelled patches. The defaults are "
                         "empanada's (MitoNet_v1's architecture).")
        self.architecture = QComboBox()
        self.architecture.addItems(ARCHITECTURE_CHOICES)
        self.architecture_help = _help("")
        self.encoder = QComboBox()
        self.encoder.addItems(ENCODER_CHOICES)
        self.encoder.setCurrentText("resnet50")
        self.random_radio = QRadioButton("Random weights")
        self.cem_radio = QRadioButton("CEM1.5M weights (self-supervised, ResNet-50)")
        self.init_group = QButtonGroup(self)
        self.init_group.addButton(self.random_radio)
        self.init_group.addButton(self.cem_radio)
        self.random_radio.setChecked(True)
        self.cem_status = QLabel("")
        self.cem_status.setWordWrap(True)
        self.import_button = QPushButton("Import CEM weights file ...")

        model_box = QGroupBox("Model")
        form = QFormLayout(model_box)
        form.addRow("Architecture", self.architecture)
        form.addRow("", self.architecture_help)
        form.addRow("Encoder", self.encoder)
        form.addRow("", _help(ENCODER_HELP))
        init_column = QVBoxLayout()
        init_column.addWidget(self.random_radio)
        init_column.addWidget(self.cem_radio)
        cem_row = QHBoxLayout()
        cem_row.addWidget(self.cem_status, 1)
        cem_row.addWidget(self.import_button)
        init_column.addLayout(cem_row)
        init_column.addWidget(_help(INIT_HELP))
        form.addRow("Start from", init_column)

        self.classes = QTableWidget(0, 3)
        self.classes.setHorizontalHeaderLabels(["id", "name", "kind"])
        self.classes.verticalHeader().hide()
        self.classes.horizontalHeader().setStretchLastSection(True)
        self.add_button = QPushButton("Add class")
        self.remove_button = QPushButton("Remove last")
        self.label_divisor = QSpinBox()
        self.label_divisor.setRange(2, 10**8)
        self.label_divisor.setValue(1000)
        classes_box = QGroupBox("Classes")
        classes_layout = QVBoxLayout(classes_box)
        classes_layout.addWidget(_help(CLASSES_HELP))
        classes_layout.addWidget(self.classes, 1)
        class_buttons = QHBoxLayout()
        class_buttons.addWidget(self.add_button)
        class_buttons.addWidget(self.remove_button)
        class_buttons.addStretch(1)
        class_buttons.addWidget(QLabel("Label divisor"))
        class_buttons.addWidget(self.label_divisor)
        classes_layout.addLayout(class_buttons)
        self.error = QLabel("")
        self.error.setWordWrap(True)

        columns = QHBoxLayout()
        columns.addWidget(model_box, 1)
        columns.addWidget(classes_box, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addWidget(self.error)

        self.add_class("mito", "instance")
        self.architecture.currentTextChanged.connect(lambda *_: self._update())
        self.encoder.currentTextChanged.connect(lambda *_: self._update())
        self.cem_radio.toggled.connect(lambda *_: self._update())
        self.import_button.clicked.connect(lambda: self.import_cem())
        self.add_button.clicked.connect(lambda: self.add_class(f"class{self.classes.rowCount() + 1}", "semantic"))
        self.remove_button.clicked.connect(self.remove_class)
        self.classes.itemChanged.connect(lambda *_: self._update())
        self._update()

    # -- classes -----------------------------------------------------------------------------
    def add_class(self, name: str, kind: str) -> None:
        row = self.classes.rowCount()
        with QSignalBlocker(self.classes):  # itemChanged would read a half-built row
            self.classes.insertRow(row)
            id_item = QTableWidgetItem(str(row + 1))
            id_item.setFlags(id_item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.classes.setItem(row, 0, id_item)
            self.classes.setItem(row, 1, QTableWidgetItem(name))
            kind_box = QComboBox()
            kind_box.addItems(["instance", "semantic"])
            kind_box.setCurrentText(kind)
            kind_box.currentTextChanged.connect(lambda *_: self._update())
            self.classes.setCellWidget(row, 2, kind_box)
        self._update()

    def remove_class(self) -> None:
        if self.classes.rowCount() > 1:
            self.classes.removeRow(self.classes.rowCount() - 1)
        self._update()

    def class_lines(self) -> list[str]:
        lines = []
        for row in range(self.classes.rowCount()):
            name = self.classes.item(row, 1).text() if self.classes.item(row, 1) else ""
            kind = self.classes.cellWidget(row, 2)
            lines.append(f"{row + 1},{name},{kind.currentText() if kind is not None else 'instance'}")
        return lines

    # -- CEM weights -------------------------------------------------------------------------
    def import_cem(self, path: str | Path | None = None) -> bool:
        from empanada_desktop.backend.finetune.new_model import import_cem

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, f"CEM1.5M weights ({CEM_FILE_NAME})", "",
                                                  "Torch checkpoint (*.pth.tar *.tar *.pth);;All files (*)")
            if not path:
                return False
        try:
            import_cem(path)
        except UserError as error:
            show_error(self, "Cannot import these weights", str(error))
            return False
        self.cem_radio.setChecked(True)
        self._update()
        return True

    # -- state -------------------------------------------------------------------------------
    def settings(self) -> dict:
        return dict(architecture=self.architecture.currentText(), encoder=self.encoder.currentText(),
                    init="cem" if self.cem_radio.isChecked() else "random", classes=tuple(self.class_lines()),
                    label_divisor=self.label_divisor.value())

    def check(self) -> str | None:
        """Why the settings cannot train, or None (the TrainConfig check, plus the CEM file)."""
        settings = self.settings()
        try:
            TrainConfig(train_dirs=(Path("."),), new_name="check", **settings)
        except UserError as error:
            return str(error)
        if settings["init"] == "cem" and not imported_cem_path().is_file():
            return "Import the CEM1.5M weights file first (button above), or start from random weights."
        return None

    def _update(self) -> None:
        self.architecture_help.setText(ARCHITECTURE_HELP[self.architecture.currentText()])
        if self.cem_radio.isChecked() and self.encoder.currentText() != "resnet50":
            self.encoder.setCurrentText("resnet50")
        self.encoder.setEnabled(not self.cem_radio.isChecked())
        cem = imported_cem_path()
        self.cem_status.setText(
            f"Imported: {cem}" if cem.is_file() else
            f"Not imported yet: get <i>{CEM_FILE_NAME}</i> (Zenodo, {CEM_SOURCE.split('/files/')[0]}) "
            "and import it once."
        )
        self.label_divisor.setEnabled(self.classes.rowCount() > 1)
        self.remove_button.setEnabled(self.classes.rowCount() > 1)
        problem = self.check()
        self.error.setText(f"<span style='color:#b00020'>{problem}</span>" if problem else "")
        self.completeChanged.emit()

    def isComplete(self) -> bool:
        return self.check() is None

    def validatePage(self) -> bool:
        problem = self.check()
        if problem:
            self.error.setText(f"<span style='color:#b00020'>{problem}</span>")
            return False
        self.state.new_model = self.settings()
        self.state.model_name = None
        return True

    def nextId(self) -> int:
        return PAGE_DATA
