"""Fixtures shared by the UI tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _pyqtgraph_options(pyqtgraph_options):
    """Every UI test sees pyqtgraph configured as the app configures it."""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A registered resnet18 model folder, built once per session (registering costs seconds).

    Tests copy it into their own app home: ``shutil.copytree(tiny_model_dir, models_dir() / "tiny")``.
    """
    home = tmp_path_factory.mktemp("tiny_model_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMPANADA_DESKTOP_HOME", str(home))
        from empanada_desktop.backend.loading import register_native_model

        register_native_model("tiny")
    return home / "models" / "tiny"
