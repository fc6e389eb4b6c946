"""The worker bridge: signals, throttling, cancel, errors, one job per kind, qasync await."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from empanada_desktop.backend.events import CheckpointSaved, Message, Progress, Validated
from empanada_desktop.core.errors import DatasetError
from empanada_desktop.ui.shell.worker import (
    WORKER_NICENESS,
    Job,
    JobBusyError,
    JobFailed,
    detach_loop,
    run_job,
    running_job,
    spawn,
)


@pytest.fixture
def qasync_loop(qapp):
    yield
    detach_loop()


def counting_job(n: int, result="done"):
    def job(stop):
        for step in range(1, n + 1):
            if stop():
                return "cancelled"
            yield Progress(step=step, total=n)
        return result

    return job


class FakeClock:
    """Advances 1 ms per reading, so a 50 ms throttle lets one of 50 events through."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.001
        return self.now


def collect(job):
    events = []
    job.event.connect(events.append)
    return events


def test_result_and_every_event_when_not_throttled(qtbot):
    job = Job("test", counting_job(5, result=42), min_interval=0.0)
    events = collect(job)
    with qtbot.waitSignal(job.finished, timeout=5000) as blocker:
        job.start()
    assert blocker.args == [42]
    assert [e.step for e in events] == [1, 2, 3, 4, 5]
    assert job.state == "finished" and not job.is_running
    assert running_job("test") is None


def test_throttle_keeps_important_events_and_the_last_progress(qtbot):
    def job_fn(stop):
        for step in range(1, 201):
            yield Progress(step=step, total=200)
            if step == 100:
                yield Validated(step=step, metrics={"iou": 0.5})
                yield CheckpointSaved(step=step, path=Path("ckpt.pth"))
                yield Message("half way")
        return "ok"

    job = Job("test", job_fn, min_interval=0.05, clock=FakeClock())
    events = collect(job)
    with qtbot.waitSignal(job.finished, timeout=5000):
        job.start()
    progress = [e for e in events if isinstance(e, Progress)]
    others = [e for e in events if not isinstance(e, Progress)]
    assert len(progress) < 20  # 200 progress events at 1 ms each through a 50 ms throttle
    assert progress[-1].step == 200  # the last one is never dropped
    assert [type(e) for e in others] == [Validated, CheckpointSaved, Message]
    # the progress of step 100 is delivered right before the validation it belongs to
    index = events.index(others[0])
    assert isinstance(events[index - 1], Progress) and events[index - 1].step == 100
    steps = [e.step for e in progress]
    assert steps == sorted(steps)


def test_cancel_is_honoured_within_one_step(qtbot):
    at_step_3 = threading.Event()
    release = threading.Event()
    steps_run = []

    def job_fn(stop):
        for step in range(1, 1000):
            if stop():
                yield CheckpointSaved(step=step - 1, path=Path("stop.pth"), kind="stop")
                return {"stopped_at": step - 1}
            steps_run.append(step)
            if step == 3:
                at_step_3.set()
                release.wait(5)
            yield Progress(step=step, total=999)
        return {"stopped_at": None}

    job = Job("finetune-test", job_fn, min_interval=0.0)
    events = collect(job)
    job.start()
    assert at_step_3.wait(5)
    job.cancel()
    release.set()
    with qtbot.waitSignal(job.finished, timeout=5000) as blocker:
        pass
    assert blocker.args == [{"stopped_at": 3}]
    assert steps_run == [1, 2, 3]
    assert job.cancel_requested
    assert isinstance(events[-1], CheckpointSaved) and events[-1].kind == "stop"


def test_wait_from_the_ui_thread_returns_once_the_job_ends(qtbot):
    """Shutdown and test teardown cancel a job and wait for its thread without running the event
    loop; the thread must end by itself, not only when the UI thread delivers its last signal."""
    job = Job("wait-test", counting_job(10_000_000), min_interval=0.0)
    job.start()
    qtbot.waitUntil(lambda: job._thread.isRunning(), timeout=5000)
    job.cancel()
    assert job.wait(5000)  # no event loop runs meanwhile
    with qtbot.waitSignal(job.done, timeout=5000):
        pass
    assert job.result == "cancelled" and not job.is_running


def test_user_error_becomes_its_message(qtbot):
    def job_fn(stop):
        yield Progress(step=1, total=2)
        raise DatasetError("masks/a.tiff is missing; add it or remove images/a.tiff")

    job = Job("test", job_fn)
    with qtbot.waitSignal(job.failed, timeout=5000) as blocker:
        job.start()
    assert blocker.args == ["masks/a.tiff is missing; add it or remove images/a.tiff"]
    assert job.state == "failed"


def test_unexpected_error_becomes_a_message_and_a_logged_traceback(qtbot, caplog):
    def job_fn(stop):
        yield Progress(step=1, total=2)
        raise ZeroDivisionError("division by zero")

    job = Job("test", job_fn)
    with qtbot.waitSignal(job.failed, timeout=5000) as blocker:
        job.start()
    message = blocker.args[0]
    assert "ZeroDivisionError" in message and "Traceback" not in message
    assert any(record.exc_info for record in caplog.records)


def test_one_job_per_kind_and_nothing_cancelled_silently(qtbot):
    release = threading.Event()

    def blocking(stop):
        release.wait(5)
        yield Progress(step=1, total=1)
        return "first"

    first = Job("exclusive", blocking)
    first.start()
    second = Job("exclusive", counting_job(1))
    with pytest.raises(JobBusyError, match="already running"):
        second.start()
    assert not first.cancel_requested
    other_kind = Job("another-kind", counting_job(1, result="other"))
    with qtbot.waitSignal(other_kind.finished, timeout=5000):
        other_kind.start()
    with qtbot.waitSignal(first.finished, timeout=5000) as blocker:
        release.set()
    assert blocker.args == ["first"]
    third = Job("exclusive", counting_job(1, result="third"))
    with qtbot.waitSignal(third.finished, timeout=5000):
        third.start()


def test_run_job_awaits_the_result_and_raises_on_failure(qtbot, qasync_loop):
    outcome = {}

    async def flow():
        outcome["value"] = await run_job(Job("flow", counting_job(3, result="r")))
        try:
            await run_job(Job("flow", _failing))
        except JobFailed as error:
            outcome["error"] = str(error)

    task = spawn(flow())
    qtbot.waitUntil(task.done, timeout=5000)
    assert task.exception() is None
    assert outcome == {"value": "r", "error": "no images found in /data; pick another folder"}


def _failing(stop):
    raise DatasetError("no images found in /data; pick another folder")
    yield  # pragma: no cover - makes this a generator


def test_no_loop_is_left_attached_after_a_flow(qtbot):
    import asyncio

    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    assert asyncio.run(_answer()) == 1  # other code may still run its own asyncio loop


async def _answer():
    return 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_jobs_run_at_lower_priority_than_the_ui_thread(qtbot):
    def job(stop):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        yield  # a generator

    ui_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker = Job("test", job, min_interval=0.0)
    with qtbot.waitSignal(worker.finished, timeout=5000) as blocker:
        worker.start()
    assert blocker.args[0] == min(ui_niceness + WORKER_NICENESS, 19)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ui_niceness
