"""Undo/redo of label edits, storing only the changed box (compressed), never whole volumes."""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass

import numpy as np

Box3D = tuple[int, int, int, int, int, int]  # z0, z1, y0, y1, x0, x1
UNDO_LIMIT = 100


def box_slices(box: Box3D) -> tuple[slice, slice, slice]:
    z0, z1, y0, y1, x0, x1 = box
    return slice(z0, z1), slice(y0, y1), slice(x0, x1)


def mask_box3d(mask: np.ndarray) -> Box3D | None:
    """Bounding box of the True voxels of a (Z, H, W) mask, or None."""
    if not mask.any():
        return None
    bounds = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        bounds += [int(hits[0]), int(hits[-1]) + 1]
    return tuple(bounds)


@dataclass(frozen=True)
class Edit:
    """One undoable change: the box and its contents before and after (zlib-compressed)."""

    box: Box3D
    shape: tuple[int, int, int]
    dtype: str
    before: bytes
    after: bytes

    @classmethod
    def make(cls, box: Box3D, before: np.ndarray, after: np.ndarray) -> Edit:
        z0, z1, y0, y1, x0, x1 = box
        shape = (z1 - z0, y1 - y0, x1 - x0)
        return cls(box, shape, str(after.dtype),
                   zlib.compress(np.ascontiguousarray(before).tobytes(), 1),
                   zlib.compress(np.ascontiguousarray(after).tobytes(), 1))

    def _array(self, data: bytes) -> np.ndarray:
        return np.frombuffer(zlib.decompress(data), dtype=self.dtype).reshape(self.shape)

    def apply(self, labels3d: np.ndarray, *, undo: bool) -> Box3D:
        labels3d[box_slices(self.box)] = self._array(self.before if undo else self.after)
        return self.box


class UndoStack:
    """At least ``limit`` undo steps; a new edit clears the redo steps."""

    def __init__(self, limit: int = UNDO_LIMIT):
        self._undo: deque[Edit] = deque(maxlen=limit)
        self._redo: list[Edit] = []

    def push(self, edit: Edit) -> None:
        self._undo.append(edit)
        self._redo.clear()

    def record(self, labels3d: np.ndarray, box: Box3D, before: np.ndarray) -> bool:
        """Record the change of ``box`` from ``before`` to its current contents (if any)."""
        after = labels3d[box_slices(box)]
        before = before.reshape(after.shape)
        if np.array_equal(before, after):
            return False
        self.push(Edit.make(box, before, after.copy()))
        return True

    def undo(self, labels3d: np.ndarray) -> Box3D | None:
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._redo.append(edit)
        return edit.apply(labels3d, undo=True)

    def redo(self, labels3d: np.ndarray) -> Box3D | None:
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._undo.append(edit)
        return edit.apply(labels3d, undo=False)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    def __len__(self) -> int:
        return len(self._undo)
