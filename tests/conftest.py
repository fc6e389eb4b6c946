"""Test-wide settings: offscreen Qt, an app home in a temporary folder, no network."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil  # noqa: E402

import pytest  # noqa: E402

_CALL_PASSED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_CALL_PASSED] = report.passed


@pytest.fixture(autouse=True)
def app_home(request, tmp_path_factory, monkeypatch):
    """Every test gets its own empty app home and its own fake ``~/.empanada``, deleted after a
    test that passed (models and checkpoints made the suite leave about 15 GB per run; a failed
    test's folders stay for a look, as its ``tmp_path`` does: tmp_path_retention_policy)."""
    home = tmp_path_factory.mktemp("app_home")
    empanada_dir = home.parent / (home.name + "_empanada")
    monkeypatch.setenv("EMPANADA_DESKTOP_HOME", str(home))
    monkeypatch.setenv("EMPANADA_DESKTOP_EMPANADA_DIR", str(empanada_dir))
    yield home
    if request.node.stash.get(_CALL_PASSED, False):
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(empanada_dir, ignore_errors=True)


_BLOCKING_DIALOGS = {
    "QMessageBox": ("question", "information", "warning", "critical", "about", "exec"),
    "QFileDialog": ("getOpenFileName", "getOpenFileNames", "getSaveFileName", "getExistingDirectory",
                    "exec"),
    "QInputDialog": ("getItem", "getText", "getInt", "getDouble", "exec"),
    "QDialog": ("exec",),
}


@pytest.fixture(autouse=True)
def no_blocking_dialogs(monkeypatch):
    """A modal dialog nobody answers would block a test forever, inside Qt, where no timeout can
    reach it. Every blocking dialog fails the test at once instead, naming itself; a test that
    expects one answers it by patching it (monkeypatch.setattr(QMessageBox, "question", ...))."""
    from PySide6 import QtWidgets

    for class_name, methods in _BLOCKING_DIALOGS.items():
        cls = getattr(QtWidgets, class_name)
        for method in methods:
            def refuse(*args, _what=f"{class_name}.{method}", **kwargs):
                texts = [a for a in args if isinstance(a, str)]
                raise AssertionError(f"unexpected blocking dialog {_what}{texts!r}: the test would hang; "
                                     "patch it in the test to answer it")

            monkeypatch.setattr(cls, method, staticmethod(refuse))


@pytest.fixture(scope="session")
def _ui_thread_collector(qapp):
    from empanada_desktop.ui.shell import ui_thread_gc

    collector = ui_thread_gc.install(qapp)
    yield collector
    collector.stop()


@pytest.fixture(autouse=True)
def gc_on_the_ui_thread(_ui_thread_collector):
    """As in the app: reference cycles are collected on the UI thread only (a worker thread's
    collection freeing Qt widgets deadlocked the suite); after each test too, since many tests
    never run the event loop."""
    yield _ui_thread_collector
    _ui_thread_collector.collect_due()


@pytest.fixture(scope="session")
def pyqtgraph_options():
    """pyqtgraph's global options, which the app sets at start-up, for tests that build views
    without starting the app (the UI tests use it automatically)."""
    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    configure_pyqtgraph()


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
