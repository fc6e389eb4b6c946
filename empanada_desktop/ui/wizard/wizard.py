"""The finetune wizard: from "the model is not good enough on my data" to a better model.

Pages share their choices through one :class:`~empanada_desktop.ui.wizard.state.WizardState`
that the wizard holds (``wizard.state``) and hands to each page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget, QWizard

from empanada_desktop.ui.wizard.data_page import DataPage
from empanada_desktop.ui.wizard.model_page import ModelPage
from empanada_desktop.ui.wizard.new_model_page import NewModelPage
from empanada_desktop.ui.wizard.page_ids import (
    PAGE_DATA,
    PAGE_MODEL,
    PAGE_NEW_MODEL,
    PAGE_RESULTS,
    PAGE_RUN,
    PAGE_SETTINGS,
)
from empanada_desktop.ui.wizard.results_page import ResultsPage
from empanada_desktop.ui.wizard.run_page import RunPage
from empanada_desktop.ui.wizard.settings_page import SettingsPage
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)


class FinetuneWizard(QWizard):
    """Five pages; signals tell the main window about a new model and where to open it."""

    modelRegistered = Signal(str)
    openInInference = Signal(str)

    def __init__(self, parent: QWidget | None = None,
                 training_set_dir: Callable[[], Path | None] | None = None):
        super().__init__(parent)
        self.setWindowTitle("Finetune or train a model")
        self.setWizardStyle(QWizard.WizardStyle.ClassicStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage, False)
        self.setOption(QWizard.WizardOption.NoCancelButtonOnLastPage, True)
        self.resize(1000, 720)
        self.state = WizardState()
        self.model_page = ModelPage(self.state)
        self.data_page = DataPage(self.state, training_set_dir=training_set_dir)
        self.settings_page = SettingsPage(self.state)
        self.run_page = RunPage(self.state)
        self.results_page = ResultsPage(self.state)
        self.new_model_page = NewModelPage(self.state)
        for page_id, page in ((PAGE_MODEL, self.model_page), (PAGE_NEW_MODEL, self.new_model_page),
                              (PAGE_DATA, self.data_page),
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
