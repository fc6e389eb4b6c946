"""The wizard opened on one page, for screenshots (``empanada-desktop screenshots DIR``).

The model, data and settings pages show the real state of this computer (registered models,
the demo training set); the settings page is shown once it has counted the trainable
parameters (or found that it cannot), so that the screenshot does not depend on timing. The run and results pages cannot run a real finetuning for a
screenshot, so they are fed a short example curve and example metrics, which their titles say.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from empanada_desktop.backend.events import Health, Progress, Validated
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.wizard.page_ids import PAGE_NAMES, PAGE_RESULTS, PAGE_RUN, PAGE_SETTINGS
from empanada_desktop.ui.wizard.wizard import FinetuneWizard


def _demo_training_set() -> Path | None:
    from empanada_desktop.core.resources import demo_dir

    folder = demo_dir() / "training_set"
    return folder if folder.is_dir() else None


def _wait_for(task, timeout_s: float = 60.0) -> None:
    """Run the event loop until the UI flow ``task`` is done (or ``timeout_s`` has passed)."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while task is not None and not task.done() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


def wizard_at(page_id: int):
    from empanada_desktop.backend.finetune.loop import FinetuneResult
    from empanada_desktop.core.registry import ModelRegistry

    wizard = FinetuneWizard(training_set_dir=_demo_training_set)
    models = ModelRegistry().list()
    installed = [m for m in models if m.installed]
    wizard.state.model_name = (installed or models)[0].name
    demo = _demo_training_set()
    wizard.state.train_dirs = [demo] if demo else []
    wizard.run_page.autostart = False
    wizard.setStartId(page_id)
    if page_id == PAGE_RUN:
        wizard.run_page.setTitle("Finetuning (example numbers for this screenshot)")
    if page_id == PAGE_RESULTS:
        wizard.results_page.setTitle("Results (example numbers for this screenshot)")
        wizard.state.result = FinetuneResult(
            run_dir=Path("runs/example"), model_name="MitoNet_v1_lab",
            baseline_metrics={"iou": 0.31, "pq": 0.18, "f1": 0.27},
            final_metrics={"iou": 0.74, "pq": 0.58, "f1": 0.71})
    wizard.show()
    if page_id == PAGE_SETTINGS:
        _wait_for(wizard.settings_page.counts_task)
    if page_id == PAGE_RUN:
        page = wizard.run_page
        page.progress.setRange(0, 200)
        page.on_event(Validated(step=0, metrics={"iou": 0.31, "pq": 0.18, "f1": 0.27}, baseline=True))
        for step in range(1, 121):
            lr = 0.003 * math.sin(min(step / 60, 1) * math.pi / 2)
            losses = {"total": 2.0 * math.exp(-step / 40) + 0.3, "ce": 0.6 * math.exp(-step / 30) + 0.1,
                      "mse": 1.2 * math.exp(-step / 50) + 0.15, "l1": 0.05, "pointrend_ce": 0.2}
            page.on_event(Progress(step=step, total=200, losses=losses, lr=lr,
                                   seconds_per_step=12.5, eta_seconds=12.5 * (200 - step)))
            start = {"stem": 0.3, "stage1": 0.8, "stage2": 1.5, "stage3": 2.5, "stage4": 9.0}
            drift = 1 + step / 400
            page.on_event(Health(step=step, grad_norms={"heads": 2.0 * math.exp(-step / 60) + 0.4,
                                                        "encoder": 0.3 * math.exp(-step / 60) + 0.05},
                                 encoder_scales={k: v * drift ** (i / 2) for i, (k, v) in enumerate(start.items())}
                                 if step % 5 == 0 or step == 1 else {}, start_scales=start))
            if step in (50, 100):
                page.on_event(Validated(step=step, metrics={"iou": 0.5 + step / 1000,
                                                            "pq": 0.35 + step / 1000,
                                                            "f1": 0.5 + step / 1000}))
    return wizard


def _wizard_screen(page_id: int):
    return lambda: (wizard_at(page_id), (1000, 720))


for _page_id, _name in PAGE_NAMES.items():
    register_screen(f"wizard_{_page_id + 1}_{_name}", _wizard_screen(_page_id))
