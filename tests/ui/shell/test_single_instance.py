"""A second window on the same app home is told so and autosaves to its own folder."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from empanada_desktop.ui.shell import app as app_module
from empanada_desktop.ui.shell.single_instance import claim_app_home


def test_second_window_warns_and_gets_its_own_autosave(qtbot, monkeypatch):
    warned, restores = [], []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: warned.append(text))
    monkeypatch.setattr(app_module, "offer_restore", lambda window: restores.append(window) or False)
    first = app_module.create_window([])
    qtbot.addWidget(first)
    assert warned == [] and restores == [first]
    second = app_module.create_window([])
    qtbot.addWidget(second)
    assert len(warned) == 1 and "already open" in warned[0] and "own autosave folder" in warned[0]
    assert restores == [first]  # the second window does not take the first one's autosave
    assert second.autosaver.directory.parent == first.autosaver.directory
    first.instance_lock.unlock()
    lock, other = claim_app_home()
    assert other is None  # free again once the first window let go
    lock.unlock()
