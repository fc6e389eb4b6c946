"""Shared by the wizard tests: a wizard that cleans up its run, and tiny training sets."""

from __future__ import annotations

import numpy as np
import pytest

from empanada_desktop.core.dataset import write_pair
from empanada_desktop.ui.shell.worker import detach_loop
from empanada_desktop.ui.wizard.wizard import FinetuneWizard

def _make_set(root, count, seed):
    """``count`` 64 px image/mask pairs with three bright squares each, in empanada's layout."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        image = rng.integers(0, 120, (64, 64), dtype=np.uint8)
        mask = np.zeros((64, 64), np.int32)
        for label, (r, c) in enumerate(rng.integers(12, 52, (3, 2)), start=1):
            mask[r - 8:r + 8, c - 8:c + 8] = label
            image[r - 8:r + 8, c - 8:c + 8] = 200
        write_pair(root, "cells", f"p{index}", image, mask)
    return root


@pytest.fixture
def make_set():
    """The tiny training-set writer: ``make_set(root, count, seed)``."""
    return _make_set


@pytest.fixture
def wizard(qtbot):
    wizard = FinetuneWizard(training_set_dir=lambda: None)
    qtbot.addWidget(wizard)
    wizard.show()
    yield wizard
    job = wizard.run_page.job
    if job is not None and job.is_running:
        job.cancel()
        job.wait()
    detach_loop()
