"""The finetune wizard: from "the model is not good enough on my data" to a better model.

Pages share their choices through attributes of the wizard (``model_name``, ``train_dirs``,
``val_dir``, ``train_count``, ``remedy``, ``config``, ``resume_run``, ``result``) rather than
QWizard fields, because most are paths, lists or config objects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget, QWizard

from empanada_desktop.ui.wizard.data_page import DataPage
from empanada_desktop.ui.wizard.model_page import ModelPage
from empanada_desktop.ui.wizard.results_page import ResultsPage
from empanada_desktop.ui.wizard.run_page import RunPage
from empanada_desktop.ui.wizard.settings_page import SettingsPage

log = logging.getLogger(__name__)

PAGE_MODEL, PAGE_DATA, PAGE_SETTINGS, PAGE_RUN, PAGE_RESULTS = range(5)


class FinetuneWizard(QWizard):
    """Five pages; signals tell the main window about a new model and where to open it."""

    modelRegistered = Signal(str)
    openInInference = Signal(str)

    def __init__(self, parent: QWidget | None = None,
                 training_set_dir: Callable[[], Path | None] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Finetune a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, False)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.resize(1000, 720)
        self.model_name: str | None = None
        self.train_dirs: list[Path] = []
        self.val_dir: Path | None = None
        self.train_count = 0
        self.remedy: str | None = None
        self.config = None
        self.resume_run = None
        self.result = None
        self.model_page = ModelPage()
        self.data_page = DataPage(training_set_dir=training_set_dir)
        self.settings_page = SettingsPage()
        self.run_page = RunPage()
        self.results_page = ResultsPage()
        for page_id, page in ((PAGE_MODEL, self.model_page), (PAGE_DATA, self.data_page),
                              (PAGE_SETTINGS, self.settings_page), (PAGE_RUN, self.run_page),
                              (PAGE_RESULTS, self.results_page)):
            self.setPage(page_id, page)
        self.setStartId(PAGE_MODEL)

    def reject(self) -> None:
        """Closing while a run trains cancels it (a checkpoint is saved) instead of orphaning it."""
        job = self.run_page.job
        if job is not None and job.is_running:
            self.run_page.cancel()
            log.info("finetune wizard closed during a run: cancelled, the checkpoint is kept")
        super().reject()
