"""Annotation: paint, erase, fill, pick, merge, delete, split, undo/redo (>= 50 steps)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.viewer.annotation import AnnotationController
from empanada_desktop.ui.viewer.annotation_panel import AnnotationPanel
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.viewer import Viewer


@pytest.fixture
def setup(qtbot):
    document = Document()
    document.set_image(np.zeros((3, 40, 50), np.uint8))
    viewer = Viewer(document)
    qtbot.addWidget(viewer)
    controller = AnnotationController(document, viewer)
    panel = AnnotationPanel(controller)
    qtbot.addWidget(panel)
    return document, viewer, controller, panel


def test_paint_stroke_then_undo_redo(setup, qtbot):
    document, viewer, controller, panel = setup
    assert document.labels is None  # created on the first edit
    controller.set_tool("brush")
    assert viewer.mouse_handler is controller
    controller.set_brush_size(3)
    with qtbot.waitSignal(controller.strokeFinished):
        controller.stroke([(10, 5), (10, 30)])
    labels = document.labels
    assert labels.dtype == np.int32 and labels.shape == (3, 40, 50)
    assert (labels[1, 10, 5:31] == 1).all() and labels[0].max() == 0 and labels[1, 14, 10] == 0
    assert (viewer.labels_layer.rgba()[10, 10, 3]) > 0  # drawn on screen
    assert panel.undo_action.isEnabled() and not panel.redo_action.isEnabled()
    controller.undo()
    assert labels.max() == 0
    assert panel.redo_action.isEnabled()
    controller.redo()
    assert (labels[1, 10, 5:31] == 1).all()


def test_eraser_fill_picker_and_next_free_label(setup):
    document, _, controller, _ = setup
    controller.set_brush_size(1)
    controller.set_label(4)
    # a closed square outline, then fill its inside
    for a, b in [((5, 5), (5, 15)), ((5, 15), (15, 15)), ((15, 15), (15, 5)), ((15, 5), (5, 5))]:
        controller.stroke([a, b], tool="brush")
    controller.set_label(7)
    controller.set_tool("fill")
    controller.press((10.5, 10.5))
    view = document.current_labels()
    assert (view[6:15, 6:15] == 7).all() and view[5, 5] == 4 and view[20, 20] == 0
    controller.stroke([(10, 10)], tool="eraser")
    assert view[10, 10] == 0
    assert controller.next_free_label() == 8
    controller.set_tool("picker")
    controller.press((5.5, 5.5))
    assert controller.label == 4 and controller.selected == {4}
    controller.press((7.5, 7.5), Qt.KeyboardModifier.ControlModifier)
    assert controller.selected == {4, 7}
    # each operation is one undo step: 4 sides + fill + erase
    assert len(controller.undo_stack) == 6


def test_merge_delete_and_split(setup):
    document, _, controller, panel = setup
    labels = document.labels3d()
    labels[1, 2:8, 2:8] = 2
    labels[1, 20:30, 2:8] = 3
    labels[0, 20:30, 2:8] = 3  # merge and delete act on the whole volume
    controller.set_selected({2, 3})
    assert panel.merge_action.isEnabled()
    assert controller.merge_selected() == 2
    assert (labels == 3).sum() == 0 and (labels[0, 20:30, 2:8] == 2).all()
    controller.undo()
    assert (labels[0, 20:30, 2:8] == 3).all()
    controller.delete_label(3)
    assert (labels == 3).sum() == 0
    with pytest.raises(UserError):
        controller.delete_label(99)
    # split a dumbbell on the slice on screen
    labels[1, 30:36, 10:20] = 5
    labels[1, 30:36, 30:40] = 5
    labels[1, 32:34, 20:30] = 5
    controller.set_tool("split")
    controller.press((33.5, 12.5))
    controller.press((33.5, 37.5))
    assert panel.split_action.isEnabled()
    ids = controller.split()
    assert ids[0] == 5 and ids[1] not in (2, 5)
    assert labels[1, 33, 12] == 5 and labels[1, 33, 37] == ids[1]
    assert controller.markers == []
    with pytest.raises(UserError):
        controller.split()


def test_undo_keeps_at_least_50_steps(setup):
    document, _, controller, _ = setup
    controller.set_brush_size(1)
    for i in range(60):
        controller.set_label(i + 1)
        controller.stroke([(i % 40, i % 50)], tool="brush")
    steps = 0
    while controller.undo():
        steps += 1
    assert steps >= 50
    assert document.labels[:, :10, :10].max() <= 60  # undone boxes restored, nothing else


def test_flipbook_allows_painting_only_the_middle_slice(setup):
    document, _, controller, _ = setup
    document.annotated_index = 1
    document.set_index(0)
    messages = []
    controller.message.connect(messages.append)
    controller.stroke([(5, 5)], tool="brush")
    assert document.labels is None and messages
    document.set_index(1)
    controller.stroke([(5, 5)], tool="brush")
    assert document.labels[1, 5, 5] == 1


def test_tooltips_name_shortcuts(setup):
    *_, panel = setup
    assert "(B)" in panel.tool_actions["brush"].toolTip()
    assert "Ctrl+Z" in panel.undo_action.toolTip() or "⌘Z" in panel.undo_action.toolTip()


def test_painting_in_xz_plane_edits_the_volume(setup):
    document, _, controller, _ = setup
    document.set_plane("xz")
    controller.set_brush_size(1)
    controller.stroke([(0, 3), (2, 3)], tool="brush")  # rows are z in the xz plane
    assert (document.labels[:, document.index, 3] == 1).all()
    controller.undo()
    assert document.labels.max() == 0
