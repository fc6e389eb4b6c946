"""Wizard page 2: training data (the set built in the app, or empanada-layout folders),
an optional validation set, and what was found in them before continuing."""

from __future__ import annotations

import logging
from html import escape
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QRadioButton,
    QTextBrowser,
    QVBoxLayout,
    QWizardPage,
)

from empanada_desktop.backend.finetune.config import default_of
from empanada_desktop.ui.wizard import advice
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)

DEFAULT_BATCH = default_of("batch_size")
REMEDIES = ("smaller_batch", "duplicate", "more_data")


def report_html(title: str, report, problems: list[str]) -> str:
    """Counts per source, problems (red) and notes of a DatasetReport."""
    counts = {source: len(pairs) for source, pairs in report.sources.items()}
    total = sum(counts.values())
    parts = [f"<b>{escape(title)}: {total} image/mask pair(s) in {len(counts)} source(s)</b>"]
    if counts:
        shown = sorted(counts.items())
        items = "".join(f"<li>{escape(str(s))}: {n}</li>" for s, n in shown[:12])
        if len(shown) > 12:
            items += f"<li>... and {len(shown) - 12} more sources</li>"
        parts.append(f"<ul>{items}</ul>")
    for problem in problems:
        parts.append(f"<p style='color:#b00020'>Problem: {escape(problem)}</p>")
    for note in report.notes:
        parts.append(f"<p style='color:#555'>Note: {escape(note)}</p>")
    return "".join(parts)


class DataPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None, training_set_dir=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("Training data")
        self.setSubTitle(advice.DATA_INTRO)
        self._training_set_dir = training_set_dir or (lambda: None)
        self.app_set_radio = QRadioButton("The training set you are building in this app")
        self.folders_radio = QRadioButton("Folders in empanada's layout (several are combined)")
        self.folders_list = QListWidget()
        self.folders_list.setMaximumHeight(90)
        self.add_folder_button = QPushButton("Add folder ...")
        self.remove_folder_button = QPushButton("Remove")
        self.val_edit = QLineEdit()
        self.val_edit.setPlaceholderText("No validation set: compared on training patches (optimistic)")
        self.val_browse = QPushButton("Choose ...")
        self.val_clear = QPushButton("Clear")
        self.report_view = QTextBrowser()
        self.remedy_box = QGroupBox("Fewer patches than the batch size")
        self.remedy_text = QLabel()
        self.remedy_text.setWordWrap(True)
        self.remedy_group = QButtonGroup(self)
        self.remedy_buttons = {name: QRadioButton() for name in REMEDIES}
        remedy_layout = QVBoxLayout(self.remedy_box)
        remedy_layout.addWidget(self.remedy_text)
        for index, name in enumerate(REMEDIES):
            self.remedy_group.addButton(self.remedy_buttons[name], index)
            remedy_layout.addWidget(self.remedy_buttons[name])
        self.remedy_box.hide()

        source_group = QButtonGroup(self)
        source_group.addButton(self.app_set_radio)
        source_group.addButton(self.folders_radio)
        folder_buttons = QVBoxLayout()
        folder_buttons.addWidget(self.add_folder_button)
        folder_buttons.addWidget(self.remove_folder_button)
        folder_buttons.addStretch(1)
        folders = QHBoxLayout()
        folders.addSpacing(20)
        folders.addWidget(self.folders_list, 1)
        folders.addLayout(folder_buttons)
        val_row = QHBoxLayout()
        val_row.addWidget(self.val_edit, 1)
        val_row.addWidget(self.val_browse)
        val_row.addWidget(self.val_clear)
        val_help = QLabel(advice.VALIDATION)
        val_help.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.app_set_radio)
        layout.addWidget(self.folders_radio)
        layout.addLayout(folders)
        layout.addWidget(QLabel("<b>Validation set</b>"))
        layout.addWidget(val_help)
        layout.addLayout(val_row)
        layout.addWidget(self.report_view, 1)
        layout.addWidget(self.remedy_box)

        self.app_set_radio.toggled.connect(lambda *_: self.check())
        self.add_folder_button.clicked.connect(lambda: self.add_folder())
        self.remove_folder_button.clicked.connect(self._remove_selected_folder)
        self.val_browse.clicked.connect(lambda: self.set_val_dir())
        self.val_clear.clicked.connect(lambda: self.set_val_dir(""))
        self.val_edit.editingFinished.connect(self.check)
        self.remedy_group.buttonToggled.connect(lambda *_: self.completeChanged.emit())
        self.train_report = None
        self.val_report = None
        self.train_problems: list[str] = []
        self.val_problems: list[str] = []
        self.total = 0

    # -- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:
        app_dir = self._training_set_dir()
        has_app_set = app_dir is not None and Path(app_dir).is_dir()
        self.app_set_radio.setEnabled(has_app_set)
        self.app_set_radio.setText(
            f"The training set you are building in this app ({app_dir})" if has_app_set else
            "The training set you are building in this app (none saved yet: use the patch picker)")
        if has_app_set and not self.folders_list.count():
            self.app_set_radio.setChecked(True)
        elif not self.app_set_radio.isChecked():
            self.folders_radio.setChecked(True)
        self._suggest_val_dir()
        self.check()

    def _suggest_val_dir(self) -> None:
        """Fill in the share held out when the set was saved (``<folder>_val``), if there is one."""
        if self.val_edit.text().strip():
            return
        for root in self.train_dirs():
            held_out = root.with_name(root.name + "_val")
            if held_out.is_dir():
                self.val_edit.setText(str(held_out))
                return

    def isComplete(self) -> bool:
        if self.train_report is None or self.total == 0 or self.train_problems:
            return False
        if self.val_problems:
            return False
        if self.total < DEFAULT_BATCH:
            return self.remedy() in ("smaller_batch", "duplicate")
        return True

    def validatePage(self) -> bool:
        state = self.state
        state.train_dirs = self.train_dirs()
        state.val_dir = self.val_dir()
        state.train_count = self.total
        state.remedy = self.remedy() if self.total < DEFAULT_BATCH else None
        return True

    # -- state -------------------------------------------------------------------------------
    def train_dirs(self) -> list[Path]:
        if self.app_set_radio.isChecked():
            app_dir = self._training_set_dir()
            return [Path(app_dir)] if app_dir else []
        return [Path(self.folders_list.item(i).text()) for i in range(self.folders_list.count())]

    def val_dir(self) -> Path | None:
        text = self.val_edit.text().strip()
        return Path(text) if text else None

    def remedy(self) -> str | None:
        for name, button in self.remedy_buttons.items():
            if button.isChecked():
                return name
        return None

    def add_folder(self, folder: str | Path | None = None) -> None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Training folder (empanada layout)")
            if not folder:
                return
        existing = {self.folders_list.item(i).text() for i in range(self.folders_list.count())}
        if str(folder) not in existing:
            self.folders_list.addItem(str(folder))
        self.folders_radio.setChecked(True)
        self._suggest_val_dir()
        self.check()

    def _remove_selected_folder(self) -> None:
        row = self.folders_list.currentRow()
        if row >= 0:
            self.folders_list.takeItem(row)
            self.check()

    def set_val_dir(self, folder: str | Path | None = None) -> None:
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Validation folder (empanada layout)")
            if not folder:
                return
        self.val_edit.setText(str(folder))
        self.check()

    def choose_remedy(self, name: str) -> None:
        self.remedy_buttons[name].setChecked(True)

    def check(self) -> None:
        """Scan the chosen folders and show counts and problems (the Next button follows)."""
        from empanada_desktop.core.dataset import validate_roots

        roots = self.train_dirs()
        parts = []
        self.train_report = self.val_report = None
        self.train_problems, self.val_problems = [], []
        self.total = 0
        if not roots:
            parts.append("<p>Choose the training data above.</p>")
        else:
            missing = [str(r) for r in roots if not r.is_dir()]
            self.train_problems = [f"Folder not found: {', '.join(missing)}"] if missing else []
            self.train_report = validate_roots([r for r in roots if r.is_dir()])
            self.train_problems += list(self.train_report.problems)
            self.total = sum(len(p) for p in self.train_report.sources.values())
            if self.total == 0 and not self.train_problems:
                self.train_problems.append(
                    "No image/mask pairs found. Each source folder needs images/ and masks/ with "
                    "files of the same name.")
            parts.append(report_html("Training", self.train_report, self.train_problems))
        val = self.val_dir()
        if val is not None:
            self.val_report = validate_roots([val] if val.is_dir() else [])
            self.val_problems = list(self.val_report.problems)
            if not val.is_dir():
                self.val_problems.insert(0, f"Validation folder not found: {val}")
            elif any(val.resolve() == r.resolve() for r in roots if r.is_dir()):
                self.val_problems.insert(0, advice.VAL_IS_TRAIN.format(folder=val))
            elif not self.val_report.sources:
                self.val_problems.append(f"No image/mask pairs in {val}.")
            parts.append(report_html("Validation", self.val_report, self.val_problems))
        self.report_view.setHtml("".join(parts))
        few = self.train_report is not None and 0 < self.total < DEFAULT_BATCH
        self.remedy_box.setVisible(few)
        if few:
            self.remedy_text.setText(advice.FEW_IMAGES.format(count=self.total, batch=DEFAULT_BATCH))
            self.remedy_buttons["smaller_batch"].setText(
                advice.REMEDY_SMALLER_BATCH.format(count=self.total))
            self.remedy_buttons["duplicate"].setText(advice.REMEDY_DUPLICATE.format(batch=DEFAULT_BATCH))
            self.remedy_buttons["more_data"].setText(advice.REMEDY_MORE_DATA)
        self.completeChanged.emit()
