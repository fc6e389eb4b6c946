"""Wizard page 4: the run itself - progress with ETA, live curves, validation metrics, cancel
(which saves a checkpoint) and resume."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWizardPage,
)

from empanada_desktop.backend.events import CheckpointSaved, Health, Message, Progress, Validated
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.worker import Job, JobBusyError
from empanada_desktop.ui.wizard import advice
from empanada_desktop.ui.wizard.health_plot import HealthPanel
from empanada_desktop.ui.wizard.live_plot import LivePlot
from empanada_desktop.ui.wizard.settings_page import format_duration
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("iou", "pq", "f1")


def finetune_job(config=None, resume_dir: Path | None = None, processes: int = 1):
    """The worker job: a new run from ``config``, or the run in ``resume_dir`` continued; with
    ``processes`` > 1 in that many torchrun processes (one per GPU)."""

    def job(stop):
        from empanada_desktop.backend.finetune.loop import finetune
        from empanada_desktop.backend.finetune.run_folder import resume_config

        run_config = resume_config(resume_dir) if resume_dir is not None else config
        if processes > 1:
            from empanada_desktop.backend.finetune.launch import run_in_processes

            return (yield from run_in_processes(run_config, processes, stop))
        return (yield from finetune(run_config, stop))

    return job


class RunPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("Finetuning")
        self.setSubTitle(advice.CANCEL)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m iterations")
        self.eta = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LivePlot()
        self.metrics_table = QTableWidget(0, 1 + len(METRIC_COLUMNS))
        self.metrics_table.setHorizontalHeaderLabels(["iteration", "IoU", "PQ", "F1@0.5"])
        self.metrics_table.verticalHeader().hide()
        self.metrics_table.setMaximumWidth(280)
        self.metrics_table.horizontalHeader().setDefaultSectionSize(62)
        self.metrics_table.horizontalHeader().setStretchLastSection(True)
        self.cancel_button = QPushButton("Cancel run (saves a checkpoint)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.hide()
        top = QHBoxLayout()
        top.addWidget(self.progress, 1)
        top.addWidget(self.eta)
        middle = QHBoxLayout()
        middle.addWidget(self.plot, 1)
        side = QVBoxLayout()
        side.addWidget(QLabel("<b>Validation</b>"))
        side.addWidget(self.metrics_table, 1)
        middle.addLayout(side)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.resume_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(middle, 1)
        self.health = HealthPanel()
        layout.addWidget(self.health)
        layout.addLayout(buttons)
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button.clicked.connect(self.resume)
        self.job: Job | None = None
        self.result = None
        self.run_dir: Path | None = None
        self.events: list = []
        self.outcome = "idle"  # idle, running, finished, cancelled, failed
        self.autostart = True  # False only for screenshots

    # -- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:
        if not self.autostart:
            return
        if self.state.resume_run is not None:
            self.start(resume_dir=self.state.resume_run.run_dir)
        else:
            self.start(config=self.state.config)

    def isComplete(self) -> bool:
        return self.outcome == "finished" and self.result is not None

    def validatePage(self) -> bool:
        self.state.result = self.result
        return True

    def cleanupPage(self) -> None:
        # Going back while training would orphan the run: cancel it (a checkpoint is saved).
        if self.job is not None and self.job.is_running:
            self.job.cancel()

    # -- running -----------------------------------------------------------------------------
    def start(self, config=None, resume_dir: Path | None = None) -> bool:
        self.plot.clear()
        self.health.clear()
        self.metrics_table.setRowCount(0)
        self.result = None
        self.events = []
        self.run_dir = Path(resume_dir) if resume_dir is not None else None
        self.resume_button.hide()
        total = config.iterations if config is not None else 0
        earlier = []
        if resume_dir is not None:
            from empanada_desktop.ui.wizard.run_history import earlier_events

            total, earlier = earlier_events(resume_dir)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(0)
        self.eta.setText("")
        for event in earlier:  # the curve and validations before the stop stay on screen
            self.on_event(event)
        self.job = Job("finetune", finetune_job(config, resume_dir, processes=self.state.processes))
        self.job.event.connect(self.on_event)
        self.job.finished.connect(self.on_finished)
        self.job.failed.connect(self.on_failed)
        try:
            self.job.start()
        except JobBusyError as error:
            self.outcome = "failed"
            self.status.setText(str(error))
            return False
        self.outcome = "running"
        self.cancel_button.setEnabled(True)
        self.status.setText("Resuming from the last checkpoint ..." if resume_dir else
                            "Starting: loading the model and the data ...")
        self._set_navigation(running=True)
        self.completeChanged.emit()
        return True

    def cancel(self) -> None:
        if self.job is not None and self.job.is_running:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after the current iteration and saving a checkpoint ...")

    def resume(self) -> bool:
        if self.run_dir is None:
            return False
        return self.start(resume_dir=self.run_dir)

    def on_event(self, event) -> None:
        self.events.append(event)
        if isinstance(event, Progress):
            self.progress.setMaximum(max(event.total, 1))
            self.progress.setValue(min(event.step, event.total))
            self.plot.add(event)
            if event.eta_seconds is not None:
                self.eta.setText(f"about {format_duration(event.eta_seconds)} left")
            elif event.seconds_per_step:
                left = (event.total - event.step) * event.seconds_per_step
                self.eta.setText(f"about {format_duration(left)} left")
            loss = event.losses.get("total", event.losses.get("loss")) if event.losses else None
            text = f"Iteration {event.step} of {event.total}"
            if loss is not None:
                text += f", loss {loss:.4f}"
            if event.message:
                text += f" - {event.message}"
            self.status.setText(text)
        elif isinstance(event, Validated):
            self._add_metrics(event)
        elif isinstance(event, Health):
            self.health.add(event)
        elif isinstance(event, CheckpointSaved):
            self.run_dir = _run_dir_of(event.path)
            if event.kind == "stop":
                self.status.setText(f"Checkpoint saved at iteration {event.step}.")
        elif isinstance(event, Message):
            self.status.setText(event.text)

    def _add_metrics(self, event: Validated) -> None:
        row = self.metrics_table.rowCount()
        self.metrics_table.insertRow(row)
        label = "before" if event.baseline else str(event.step)
        self.metrics_table.setItem(row, 0, QTableWidgetItem(label))
        for column, key in enumerate(METRIC_COLUMNS, start=1):
            value = event.metrics.get(key)
            text = f"{value:.3f}" if isinstance(value, (int, float)) else "-"
            self.metrics_table.setItem(row, column, QTableWidgetItem(text))
        self.metrics_table.scrollToBottom()

    def on_finished(self, result) -> None:
        self._set_navigation(running=False)
        self.cancel_button.setEnabled(False)
        if getattr(result, "health_problem", None):
            self.outcome = "failed"
            self.status.setText(f"<span style='color:#b00020'>{result.health_problem}</span>")
            self.result = None
        elif getattr(result, "stopped", False) or (self.job is not None and self.job.cancel_requested):
            self.outcome = "cancelled"
            where = f" in {self.run_dir}" if self.run_dir else ""
            self.status.setText(f"Cancelled; the checkpoint{where} lets you resume now or later "
                                "(first page of this wizard: 'Resume an unfinished run').")
            self.resume_button.setVisible(self.run_dir is not None)
            self.result = None
        else:
            self.outcome = "finished"
            self.result = result
            self.run_dir = Path(getattr(result, "run_dir", self.run_dir) or self.run_dir)
            self.progress.setValue(self.progress.maximum())
            self.eta.setText("")
            self.status.setText("Finished. Next: compare the finetuned model with the original.")
        self.completeChanged.emit()

    def on_failed(self, message: str) -> None:
        self.outcome = "failed"
        self._set_navigation(running=False)
        self.cancel_button.setEnabled(False)
        self.status.setText(f"<span style='color:#b00020'>Stopped: {message}</span>")
        self.resume_button.setVisible(self.run_dir is not None)
        show_error(self, "Finetuning stopped", message)
        self.completeChanged.emit()

    def _set_navigation(self, running: bool) -> None:
        wizard = self.wizard()
        if wizard is None:
            return
        from PySide6.QtWidgets import QWizard

        wizard.button(QWizard.WizardButton.BackButton).setEnabled(not running)


def _run_dir_of(checkpoint: Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
