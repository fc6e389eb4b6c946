"""Undo/redo of label edits: only the changed box is kept, compressed; redo clears on a new edit."""

from __future__ import annotations

import numpy as np

from empanada_desktop.core.undo import UndoStack, box_slices, mask_box3d


def test_mask_box3d_bounds_the_true_voxels():
    mask = np.zeros((4, 10, 12), bool)
    assert mask_box3d(mask) is None
    mask[1, 2:5, 3] = True
    mask[2, 4, 7:9] = True
    assert mask_box3d(mask) == (1, 3, 2, 5, 3, 9)


def test_record_undo_redo_round_trip():
    labels = np.zeros((2, 8, 8), np.int32)
    stack = UndoStack()
    box = (0, 1, 2, 4, 2, 4)
    before = labels[box_slices(box)].copy()
    labels[box_slices(box)] = 5
    assert stack.record(labels, box, before)
    assert not stack.record(labels, box, labels[box_slices(box)].copy())  # no change, no step
    assert stack.undo(labels) == box and not labels.any()
    assert stack.can_redo() and not stack.can_undo()
    assert stack.redo(labels) == box and labels[0, 2:4, 2:4].tolist() == [[5, 5], [5, 5]]
    assert stack.undo(labels) is not None
    labels[1, 0, 0] = 1
    stack.record(labels, (1, 2, 0, 1, 0, 1), np.zeros((1, 1, 1), np.int32))
    assert not stack.can_redo()  # a new edit clears the redo steps


def test_limit_keeps_the_newest_steps():
    labels = np.zeros((1, 4, 4), np.uint16)
    stack = UndoStack(limit=3)
    for value in range(1, 6):
        before = labels[0:1, 0:1, 0:1].copy()
        labels[0, 0, 0] = value
        stack.record(labels, (0, 1, 0, 1, 0, 1), before)
    assert len(stack) == 3
    while stack.undo(labels) is not None:
        pass
    assert labels[0, 0, 0] == 2
