"""Wizard page 1: pick the model to start from, or an unfinished run to resume."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QRadioButton,
    QTextBrowser,
    QVBoxLayout,
    QWizardPage,
)

from empanada_desktop.backend.finetune.run_folder import (
    ResumableRun,
    find_resumable_runs,
    read_config,
)
from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.models.model_manager import (
    ModelManagerDialog,
    fill_model_list,
    model_info_html,
)
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.wizard import advice
from empanada_desktop.ui.wizard.page_ids import PAGE_DATA, PAGE_NEW_MODEL, PAGE_RUN
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)


class ModelPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("Model")
        self.setSubTitle(advice.MODEL_INTRO)
        self.new_radio = QRadioButton("Finetune a model")
        self.new_radio.setChecked(True)
        self.resume_radio = QRadioButton("Resume an unfinished run")
        self.train_radio = QRadioButton("Train a new model")
        self.train_radio.setToolTip("A new model from your labelled patches: architecture, encoder, "
                                    "random or CEM1.5M weights, one or more classes.")
        self.choice_group = QButtonGroup(self)  # the radios sit in different boxes: one choice
        for radio in (self.new_radio, self.train_radio, self.resume_radio):
            self.choice_group.addButton(radio)
        train_note = QLabel(advice.TRAIN_NEW)
        train_note.setWordWrap(True)
        train_note.setStyleSheet("color: #666;")
        self.models_list = QListWidget()
        self.models_list.setMinimumWidth(330)
        self.info = QTextBrowser()
        self.info.setOpenExternalLinks(True)
        self.weights_button = QPushButton()
        self.weights_button.setToolTip("Choose the weights file you downloaded; it is checked and "
                                       "copied into the app, and the model can be finetuned")
        self.weights_button.hide()
        self.import_button = QPushButton("Import a model file (.pth) ...")
        self.import_button.setToolTip("Opens the model manager, where you can import, rename or "
                                      "remove models.")
        self.runs_list = QListWidget()
        self.runs_list.setMaximumHeight(110)
        self.runs_note = QLabel("")
        self.runs_note.setWordWrap(True)

        pick = QHBoxLayout()
        left = QVBoxLayout()
        left.addWidget(self.models_list, 1)
        left.addWidget(self.import_button)
        pick.addLayout(left)
        right = QVBoxLayout()
        right.addWidget(self.info, 1)
        right.addWidget(self.weights_button)
        pick.addLayout(right, 1)
        runs_box = QGroupBox()
        runs_layout = QVBoxLayout(runs_box)
        runs_layout.addWidget(self.resume_radio)
        runs_layout.addWidget(self.runs_list)
        runs_layout.addWidget(self.runs_note)
        layout = QVBoxLayout(self)
        layout.addWidget(self.new_radio)
        layout.addLayout(pick, 1)
        train_row = QHBoxLayout()
        train_row.addWidget(self.train_radio)
        train_row.addWidget(train_note, 1)
        layout.addLayout(train_row)
        layout.addWidget(runs_box)

        self.models_list.currentItemChanged.connect(lambda *_: self._on_model_changed())
        self.runs_list.currentItemChanged.connect(lambda *_: self._on_run_selected())
        self.new_radio.toggled.connect(lambda *_: self.completeChanged.emit())
        self.train_radio.toggled.connect(lambda *_: self.completeChanged.emit())
        self.import_button.clicked.connect(self.open_model_manager)
        self.weights_button.clicked.connect(lambda: self.import_weights())
        self.models: dict[str, object] = {}
        self.runs: list[ResumableRun] = []
        self.manager: ModelManagerDialog | None = None

    # -- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:
        self.refresh()

    def isComplete(self) -> bool:
        if self.resume_radio.isChecked():
            return self.selected_run() is not None
        if self.train_radio.isChecked():
            return True
        model = self.selected_model()
        return model is not None and model.installed

    def validatePage(self) -> bool:
        state = self.state
        if self.resume_radio.isChecked():
            run = self.selected_run()
            try:
                state.config = read_config(run.run_dir)
            except UserError as error:
                show_error(self, "Cannot resume this run", str(error))
                return False
            state.resume_run = run
            state.model_name = state.config.model
        elif self.train_radio.isChecked():
            state.resume_run = None
        else:
            state.new_model = None
            state.resume_run = None
            state.model_name = self.selected_model().name
        return True

    def nextId(self) -> int:
        if self.resume_radio.isChecked():
            return PAGE_RUN
        return PAGE_NEW_MODEL if self.train_radio.isChecked() else PAGE_DATA

    # -- state -------------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        from empanada_desktop.core.registry import ModelRegistry

        select = select or (self.selected_model().name if self.selected_model() else None)
        select = select or self.state.model_name
        try:
            self.registry = ModelRegistry()
            models = self.registry.list()
        except UserError as error:
            self.registry, models = None, []
            self.info.setHtml(f"<p style='color:#b00020'>{error}</p>")
        self.models = {model.name: model for model in models}
        with QSignalBlocker(self.models_list):
            fill_model_list(self.models_list, models, select, prefer_installed=True)
        self._on_model_changed()
        self.runs = find_resumable_runs()
        self.runs_list.clear()
        for run in self.runs:
            item = QListWidgetItem(run.label)
            item.setToolTip(str(run.run_dir))
            self.runs_list.addItem(item)
        self.resume_radio.setEnabled(bool(self.runs))
        self.runs_list.setEnabled(bool(self.runs))
        self.runs_note.setText(
            "Runs that were cancelled or stopped (crash, power cut) continue from their last "
            "checkpoint." if self.runs else "No unfinished runs."
        )
        self.completeChanged.emit()

    def selected_model(self):
        item = self.models_list.currentItem()
        return self.models.get(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def select_model(self, name: str) -> None:
        if name not in self.models:
            self.refresh()
        for row in range(self.models_list.count()):
            if self.models_list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.models_list.setCurrentRow(row)
                self.new_radio.setChecked(True)
                return
        raise KeyError(name)

    def selected_run(self) -> ResumableRun | None:
        row = self.runs_list.currentRow()
        return self.runs[row] if 0 <= row < len(self.runs) else None

    def select_run(self, run_dir: Path) -> None:
        self.refresh()
        for row, run in enumerate(self.runs):
            if Path(run.run_dir) == Path(run_dir):
                self.runs_list.setCurrentRow(row)
                self.resume_radio.setChecked(True)
                return
        raise KeyError(str(run_dir))

    def _on_model_changed(self) -> None:
        model = self.selected_model()
        if model is None:
            self.info.setHtml("<p>No model is registered yet. Import a model file (.pth).</p>")
        elif self.registry is not None:
            html = model_info_html(self.registry, model)
            if not model.installed:
                html += ("<p>This model cannot be finetuned until its weights file is imported: "
                         f"use <i>Import {model.weights_file_name}</i> below.</p>")
            self.info.setHtml(html)
        missing = model is not None and not model.installed
        self.weights_button.setVisible(missing)
        if missing:
            self.weights_button.setText(f"Import {model.weights_file_name} for {model.name} ...")
        if model is not None:
            self.new_radio.setChecked(True)
        self.completeChanged.emit()

    def _on_run_selected(self) -> None:
        if self.selected_run() is not None:
            self.resume_radio.setChecked(True)
        self.completeChanged.emit()

    def import_weights(self, file: str | Path | None = None):
        """Import the selected model's missing weights file (asked for when not given)."""
        from PySide6.QtWidgets import QFileDialog

        model = self.selected_model()
        if model is None or model.installed:
            return None
        if file is None:
            file, _ = QFileDialog.getOpenFileName(
                self, f"Import {model.weights_file_name}", str(Path.home() / "Downloads"),
                f"{model.weights_file_name} (*.pth *.pt);;All files (*)")
            if not file:
                return None
        manager = self.open_model_manager(show=False)
        return manager.import_model(Path(file), name=model.name)

    def open_model_manager(self, show: bool = True) -> ModelManagerDialog:
        if self.manager is None:
            self.manager = ModelManagerDialog(self)
            self.manager.modelsChanged.connect(lambda: self.refresh())
        self.manager.refresh()
        if show:
            self.manager.open()
        return self.manager
