"""Reference cycles are collected on the UI thread only, never inside a worker's job (a worker's
collection that freed Qt widgets deadlocked the app and the test suite)."""

from __future__ import annotations

import gc
import threading
import weakref

from empanada_desktop.ui.shell import ui_thread_gc
from empanada_desktop.ui.shell.worker import Job


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_due_generation_follows_pythons_thresholds():
    assert ui_thread_gc.due_generation((10, 0, 0), (700, 10, 10)) is None
    assert ui_thread_gc.due_generation((701, 0, 0), (700, 10, 10)) == 0
    assert ui_thread_gc.due_generation((701, 11, 0), (700, 10, 10)) == 1
    assert ui_thread_gc.due_generation((701, 11, 11), (700, 10, 10)) == 2
    assert ui_thread_gc.due_generation((5000, 0, 0), (0, 10, 10)) is None  # threshold 0: never


def test_a_busy_worker_never_collects_and_the_ui_thread_frees_its_cycles(qtbot, gc_on_the_ui_thread):
    assert not gc.isenabled()  # the collector of the app (and of the test session) is installed
    threads = []

    def record(phase, info):
        if phase == "start":
            threads.append(threading.current_thread().name)

    made = []

    def job(stop):
        for _ in range(20):
            for _ in range(5000):  # far more allocations than the 700 that trigger a collection
                Node()
            yield None
        node = Node()
        made.append(weakref.ref(node))
        return "done"

    gc.callbacks.append(record)
    try:
        worker = Job("gc-test", job, min_interval=0.0)
        with qtbot.waitSignal(worker.finished, timeout=20000):
            worker.start()
        worker.wait()
        assert threads.count(threading.main_thread().name) == len(threads)  # none in the worker
        qtbot.waitUntil(lambda: made[0]() is None, timeout=5000)  # the timer freed the cycle
    finally:
        gc.callbacks.remove(record)
    assert threads  # and collections did run, on the UI thread
