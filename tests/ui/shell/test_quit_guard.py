"""Quitting during a finetuning asks, stops the run after a step with a checkpoint, and the run
is resumable on the next launch; the window fits a 1366 x 768 screen."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from empanada_desktop.backend.events import Progress
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.run_folder import find_resumable_runs, last_checkpoint, read_metrics
from empanada_desktop.core.dataset import write_pair
from empanada_desktop.core.paths import models_dir
from empanada_desktop.ui.shell import quit_guard
from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.shell.worker import detach_loop, running_jobs
from empanada_desktop.ui.wizard.page_ids import PAGE_RUN


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    yield win
    for job in running_jobs():
        job.cancel()
        job.wait()
    detach_loop()


@pytest.fixture
def train(tmp_path, tiny_model_dir):
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    rng = np.random.default_rng(0)
    for index in range(2):
        image = rng.integers(0, 200, (64, 64), dtype=np.uint8)
        mask = np.zeros((64, 64), np.int32)
        mask[20:40, 20:40] = 1
        write_pair(tmp_path / "train", "cells", f"p{index}", image, mask)
    return tmp_path / "train"


def start_long_run(window, qtbot, train):
    wizard = window.open_finetune_wizard()
    wizard.state.config = FinetuneConfig(model="tiny", train_dirs=(train,), new_name="tiny_quit",
                                         iterations=500, patch_size=64, batch_size=2,
                                         device="cpu", register=False, validations=0)
    wizard.state.model_name = "tiny"
    wizard.run_page.autostart = False
    wizard.setStartId(PAGE_RUN)
    wizard.restart()
    assert wizard.run_page.start(config=wizard.state.config)
    steps = []
    wizard.run_page.job.event.connect(lambda e: steps.append(e.step) if isinstance(e, Progress) else None)
    qtbot.waitUntil(lambda: bool(steps), timeout=120_000)
    return wizard.run_page.job


def test_quit_during_finetune_asks_and_no_keeps_it_running(window, qtbot, train, monkeypatch):
    job = start_long_run(window, qtbot, train)
    window.busy.update_now()  # the status bar says what runs, whichever panel started it
    assert window.busy.isVisible() and window.busy.label.text().startswith("Working: finetuning (")
    asked = []

    def answer_no(parent, title, text, *args):
        asked.append(text)
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", answer_no)
    window.close()
    assert asked and "checkpoint" in asked[0]
    assert window.isVisible() and job.is_running


def test_quit_during_finetune_saves_a_resumable_checkpoint(window, qtbot, train, monkeypatch):
    job = start_long_run(window, qtbot, train)
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    window.close()
    assert not window.isVisible()
    assert not job.is_running and job.state == "finished" and job.result.stopped
    runs = find_resumable_runs()
    assert [r.new_name for r in runs] == ["tiny_quit"]
    assert last_checkpoint(runs[0].run_dir).is_file()
    steps = [r["step"] for r in read_metrics(runs[0].run_dir) if "losses" in r]
    assert steps and max(steps) < 500


def test_nothing_running_quits_without_asking(window, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a: pytest.fail("asked without a job"))
    assert quit_guard.confirm_and_stop_jobs(window)
    window.close()
    assert not window.isVisible()


def test_main_window_fits_a_laptop_screen(window):
    window.open_demo()
    needed = window.minimumSizeHint().expandedTo(window.minimumSize())
    assert needed.width() <= 1366 and needed.height() <= 700, needed
    window.resize(1366, 700)
    assert window.height() <= 700
