"""Work around a PySide6 6.12 refcount bug on Python 3.11.

Every signal emission into a Python slot drops one reference to ``True`` (measured: 100 emits,
``sys.getrefcount(True)`` falls by 100). After enough emissions the interpreter aborts at exit
with "bool_dealloc: deallocating True or False". Python 3.12+ makes bools immortal; on 3.11 we
give True and False a huge extra reference count once, which has the same effect.
"""

from __future__ import annotations

import ctypes
import sys

_PINNED = False


def pin_bool_refcounts() -> None:
    global _PINNED
    if _PINNED or sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40  # ob_refcnt is the first field
    _PINNED = True


pin_bool_refcounts()
