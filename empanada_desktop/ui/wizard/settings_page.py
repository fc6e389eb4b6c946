"""Wizard page 3: finetunable layers, iterations, patch and batch size, device, name, estimate."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWizardPage,
)

from empanada_desktop.backend.finetune.config import LAYER_CHOICES, default_of
from empanada_desktop.core.errors import ConfigError, UserError
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.worker import Job, JobBusyError, JobFailed, run_job, spawn
from empanada_desktop.ui.wizard import advice
from empanada_desktop.ui.wizard.settings_jobs import check_before_start, counts_job, estimate_job
from empanada_desktop.ui.wizard.state import WizardState

log = logging.getLogger(__name__)

# Settings the wizard's own widgets own; an advanced YAML may set everything else.
_WIDGET_KEYS = {"model", "train_dirs", "val_dir", "layers", "iterations", "patch_size",
                "batch_size", "device", "new_name", "register"}


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _help(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #666;")
    return label


class SettingsPage(QWizardPage):
    def __init__(self, state: WizardState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setTitle("Settings")
        self.setSubTitle("Each choice is explained where you make it; the defaults follow "
                         "empanada's best-practice advice.")
        layers_box = QGroupBox("Finetunable layers")
        layers_layout = QGridLayout(layers_box)
        layers_layout.addWidget(_help(advice.LAYERS_INTRO), 0, 0, 1, 3)
        self.layer_group = QButtonGroup(self)
        self.layer_buttons: dict[str, QRadioButton] = {}
        self.count_labels: dict[str, QLabel] = {}
        for row, name in enumerate(LAYER_CHOICES, start=1):
            button = QRadioButton(name)
            button.setToolTip(advice.LAYERS[name])
            self.layer_group.addButton(button, row)
            self.layer_buttons[name] = button
            self.count_labels[name] = QLabel("")
            layers_layout.addWidget(button, row, 0)
            layers_layout.addWidget(self.count_labels[name], row, 1)
            layers_layout.addWidget(_help(advice.LAYERS[name]), row, 2)
        layers_layout.setColumnStretch(2, 1)
        layers_layout.setRowStretch(len(LAYER_CHOICES) + 1, 1)
        self.layer_buttons[default_of("layers")].setChecked(True)

        self.iterations = QSpinBox()
        self.iterations.setRange(1, 100000)
        self.iterations.setValue(default_of("iterations"))
        self.patch_size = QSpinBox()
        self.patch_size.setRange(16, 4096)
        self.patch_size.setSingleStep(16)
        self.patch_size.setValue(default_of("patch_size"))
        self.patch_check = QLabel("")
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 512)
        self.batch_size.setValue(default_of("batch_size"))
        self.batch_note = QLabel("")
        self.batch_note.setWordWrap(True)
        self.device = QComboBox()
        self.device_note = QLabel("")
        self.device_note.setWordWrap(True)
        self.new_name = QLineEdit()
        self.estimate_button = QPushButton("Estimate duration")
        self.estimate_label = QLabel("Measures two iterations on the chosen device.")
        self.estimate_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Iterations", self.iterations)
        form.addRow("", _help(advice.ITERATIONS))
        patch_row = QHBoxLayout()
        patch_row.addWidget(self.patch_size)
        patch_row.addWidget(self.patch_check, 1)
        form.addRow("Patch size", patch_row)
        self.patch_help = _help(advice.PATCH_SIZE.format(padding="?"))
        form.addRow("", self.patch_help)
        form.addRow("Batch size", self.batch_size)
        form.addRow("", _help(advice.BATCH_SIZE))
        form.addRow("", self.batch_note)
        form.addRow("Device", self.device)
        form.addRow("", _help(advice.DEVICE))
        form.addRow("", self.device_note)
        form.addRow("Name of the new model", self.new_name)
        estimate_row = QHBoxLayout()
        estimate_row.addWidget(self.estimate_button)
        estimate_row.addWidget(self.estimate_label, 1)
        form.addRow("Duration", estimate_row)

        self.advanced = QGroupBox("Advanced: settings from a YAML file")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        self.load_yaml_button = QPushButton("Load config YAML ...")
        self.yaml_label = QLabel("Learning rate, weight decay, seed, precision ... from a finetune "
                                 "config YAML (for example a previous run's config.yaml).")
        self.yaml_label.setWordWrap(True)
        advanced_layout = QHBoxLayout(self.advanced)
        advanced_layout.addWidget(self.load_yaml_button)
        advanced_layout.addWidget(self.yaml_label, 1)

        columns = QHBoxLayout()
        columns.addWidget(layers_box, 1)
        columns.addLayout(form, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(columns, 1)
        layout.addWidget(self.advanced)

        self.overrides: dict = {}
        self.padding_factor = 16
        self.counts: dict[str, int] = {}
        self.counts_task = None
        self.estimate_task = None
        self.estimate_job: Job | None = None
        self.patch_size.valueChanged.connect(lambda *_: self._check_patch())
        self.batch_size.valueChanged.connect(lambda *_: self._check_batch())
        self.device.currentIndexChanged.connect(lambda *_: self._device_changed())
        self.new_name.textChanged.connect(lambda *_: self.completeChanged.emit())
        self.estimate_button.clicked.connect(lambda: self.estimate())
        self.load_yaml_button.clicked.connect(lambda: self.load_yaml())
        for button in self.layer_buttons.values():
            button.toggled.connect(lambda *_: self._invalidate_estimate())
        for spin in (self.iterations, self.patch_size, self.batch_size):
            spin.valueChanged.connect(lambda *_: self._invalidate_estimate())

    # -- wizard hooks ------------------------------------------------------------------------
    def initializePage(self) -> None:
        from empanada_desktop.core.registry import ModelRegistry

        model_name = self.state.model_name
        new_model = self.state.new_model
        if new_model is not None:  # "Train a new model": the new-model page chose these
            from empanada_desktop.ui.wizard.new_model_settings import prepare_settings_page

            model_name = prepare_settings_page(self, new_model)
        else:
            try:
                self.padding_factor = ModelRegistry().get(model_name).config.padding_factor
            except UserError as error:
                log.warning("padding factor of %s unknown: %s", model_name, error)
        self.patch_help.setText(advice.PATCH_SIZE.format(padding=self.padding_factor))
        if self.patch_size.value() % self.padding_factor:
            steps = round(default_of("patch_size") / self.padding_factor)
            self.patch_size.setValue(max(self.padding_factor, steps * self.padding_factor))
        self.patch_size.setSingleStep(self.padding_factor)
        remedy, count = self.state.remedy, self.state.train_count
        if remedy == "smaller_batch" and count:
            self.batch_size.setValue(min(self.batch_size.value(), count))
        if not self.new_name.text():
            self.new_name.setText(f"{model_name}_finetuned")
        self._fill_devices()
        self._check_patch()
        self._check_batch()
        self._load_counts(model_name if new_model is None else new_model)

    def isComplete(self) -> bool:
        return bool(self.new_name.text().strip()) and self.patch_size.value() % self.padding_factor == 0

    def validatePage(self) -> bool:
        try:
            self.state.config = self.build_config()
        except UserError as error:
            self.estimate_label.setText(f"<span style='color:#b00020'>{error}</span>")
            return False
        try:
            check_before_start(self.state.config, self.counts)
        except UserError as error:  # a taken name or a full disk: the whole message, in the error box
            self.estimate_label.setText(f"<span style='color:#b00020'>{error}</span>")
            show_error(self, "Cannot start the run", str(error))
            return False
        return True

    def cleanupPage(self) -> None:
        if self.estimate_job is not None:
            self.estimate_job.cancel()

    # -- config ------------------------------------------------------------------------------
    def layers(self) -> str:
        return next(name for name, b in self.layer_buttons.items() if b.isChecked())

    def device_choice(self) -> str:
        choice = self.device.currentData() or "auto"
        return "cuda" if str(choice).startswith("all:") else choice

    def build_config(self):
        from empanada_desktop.backend.finetune.config import FinetuneConfig

        state = self.state
        remedy, count = state.remedy, state.train_count
        settings = dict(self.overrides)
        settings.update(
            model=state.model_name, train_dirs=tuple(state.train_dirs), val_dir=state.val_dir,
            layers=self.layers(), iterations=self.iterations.value(),
            patch_size=self.patch_size.value(), batch_size=self.batch_size.value(),
            device=self.device_choice(), new_name=self.new_name.text().strip(), register=False,
        )
        if count and settings["batch_size"] > count:
            if remedy == "duplicate":
                settings["duplicate_patches"] = True
            else:
                raise ConfigError(
                    f"Batch size {settings['batch_size']} is more than the {count} training "
                    f"patches: lower it to {count} or go back and choose to repeat patches.")
        devices = str(self.device.currentData() or "")
        state.processes = int(devices.split(":")[1]) if devices.startswith("all:") else 1
        if state.new_model is not None:
            from empanada_desktop.backend.finetune.train_config import TrainConfig

            settings.pop("model")
            return TrainConfig(**settings, **state.new_model)
        return FinetuneConfig(**settings)

    def load_yaml(self, path: str | Path | None = None) -> bool:
        from empanada_desktop.backend.finetune.config import FinetuneConfig

        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Finetune config", "", "YAML (*.yaml *.yml)")
            if not path:
                return False
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{path} does not hold settings (name: value lines).")
            known = set(FinetuneConfig.__dataclass_fields__)
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: "
                                  f"{', '.join(sorted(known))}.")
        except (OSError, yaml.YAMLError, UserError) as error:
            self.yaml_label.setText(f"<span style='color:#b00020'>{error}</span>")
            return False
        for key, widget in (("iterations", self.iterations), ("patch_size", self.patch_size),
                            ("batch_size", self.batch_size)):
            if isinstance(data.get(key), int):
                widget.setValue(data[key])
        if data.get("layers") in self.layer_buttons:
            self.layer_buttons[data["layers"]].setChecked(True)
        self.overrides = {k: v for k, v in data.items() if k not in _WIDGET_KEYS and k != "out_dir"
                          and k != "resume"}
        self.advanced.setChecked(True)
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.overrides.items())) or "nothing extra"
        self.yaml_label.setText(f"Loaded {Path(path).name}: {shown}.")
        return True

    # -- checks ------------------------------------------------------------------------------
    def _check_patch(self) -> None:
        from empanada_desktop.backend.finetune.config import nearest_valid_sizes

        size = self.patch_size.value()
        if size % self.padding_factor:
            below, above = nearest_valid_sizes(size, self.padding_factor)
            self.patch_check.setText(f"<span style='color:#b00020'>not divisible by "
                                     f"{self.padding_factor}: use {below} or {above}</span>")
        else:
            self.patch_check.setText("<span style='color:#2e7d32'>OK</span>")
        self.completeChanged.emit()

    def _check_batch(self) -> None:
        batch = self.batch_size.value()
        count = self.state.train_count
        notes = []
        if batch < 16:
            notes.append("Below 16 the BatchNorm statistics get unstable; results may be noisier.")
        if count and batch > count:
            notes.append(f"You have {count} patches: "
                         + ("they are repeated to fill each batch." if
                            self.state.remedy == "duplicate" else
                            f"lower the batch size to {count} or allow repeating patches."))
        self.batch_note.setText(" ".join(notes))

    def _fill_devices(self) -> None:
        from empanada_desktop.backend.devices import list_devices

        current = self.device_choice() if self.device.count() else "auto"
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItem("auto (CUDA GPU, else Apple MPS, else CPU)", "auto")
        self.unavailable: dict[str, str] = {}
        for info in list_devices():
            text = f"{info.id}: {info.name}"
            if not info.available:
                text += " (unavailable)"
                self.unavailable[info.id] = info.reason
            self.device.addItem(text, info.id)
            index = self.device.count() - 1
            self.device.setItemData(index, info.reason or info.name, 3)  # 3 = ToolTipRole
            if not info.available:
                self.device.model().item(index).setEnabled(False)
        from empanada_desktop.ui.wizard.new_model_settings import add_all_gpus_choice

        add_all_gpus_choice(self.device)
        found = self.device.findData(current)
        self.device.setCurrentIndex(max(found, 0))
        self.device.blockSignals(False)
        self._device_changed()

    def _device_changed(self) -> None:
        lines = [f"{device}: {reason}" for device, reason in self.unavailable.items() if reason]
        self.device_note.setText(("Unavailable: " + "; ".join(lines)) if lines else "")
        self._invalidate_estimate()

    def _invalidate_estimate(self) -> None:
        if self.estimate_job is None or not self.estimate_job.is_running:
            self.estimate_label.setText("Measures two iterations on the chosen device.")

    # -- background work ---------------------------------------------------------------------
    def _load_counts(self, model_name: str | dict) -> None:
        for label in self.count_labels.values():
            label.setText("counting ...")

        async def flow():
            try:
                counts = await run_job(Job(f"counts-{id(self)}", counts_job(model_name)))
            except (JobFailed, JobBusyError) as error:
                for label in self.count_labels.values():
                    label.setText("")
                self.estimate_label.setText(f"Could not count parameters: {error}")
                return
            self.counts = dict(counts)
            for name, label in self.count_labels.items():
                if name in self.counts:
                    label.setText(f"{self.counts[name] / 1e6:.2f} M trainable")

        self.counts_task = spawn(flow())

    def estimate(self):
        """Measure seconds per iteration on the chosen device in the worker."""
        try:
            config = self.build_config()
        except UserError as error:
            self.estimate_label.setText(f"<span style='color:#b00020'>{error}</span>")
            return None

        async def flow():
            self.estimate_button.setEnabled(False)
            self.estimate_label.setText("Measuring two iterations ...")
            self.estimate_job = Job("estimate", estimate_job(config))
            try:
                seconds = await run_job(self.estimate_job)
            except (JobFailed, JobBusyError) as error:
                self.estimate_label.setText(f"<span style='color:#b00020'>{error}</span>")
                return None
            finally:
                self.estimate_button.setEnabled(True)
            self.estimate_label.setText(
                f"About {format_duration(seconds * config.iterations)} "
                f"({seconds:.2f} s per iteration x {config.iterations}), measured on "
                f"{config.device}.")
            return seconds

        self.estimate_task = spawn(flow())
        return self.estimate_task
