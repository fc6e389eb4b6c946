"""Fixtures for the finetuning tests: a tiny registered model and tiny empanada-layout data."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_fixtures import write_training_set


@pytest.fixture
def tiny_model(app_home) -> str:
    from empanada_desktop.backend.loading import register_native_model

    register_native_model("tiny", architecture="PanopticDeepLabPR", encoder="resnet18", seed=0)
    return "tiny"


@pytest.fixture
def train_dir(tmp_path) -> Path:
    return write_training_set(tmp_path / "train", {"cells_a": 3, "cells_b": 1}, seed=1)


@pytest.fixture
def val_dir(tmp_path) -> Path:
    return write_training_set(tmp_path / "val", {"cells_v": 2}, seed=2)
