"""The only threading code of the app: run a backend generator in a QThread.

A backend job is a plain generator ``job(stop) -> Iterator[Event]`` whose ``return`` value is the
result (docs/ARCHITECTURE.md). :class:`Job` runs one in its own ``QThread`` and re-emits what it yields
as Qt signals on the UI thread:

- ``event(object)``: each event; ``Progress`` events are throttled (at most one per
  ``min_interval`` seconds, 20 per second by default) but ``Validated``, ``CheckpointSaved`` and
  ``Message`` are never dropped, and the last ``Progress`` before any of them (and before the end)
  is always delivered, in order;
- ``finished(object)``: the generator's return value (also after a cancel the job honoured);
- ``failed(str)``: a message for the user. A ``UserError`` gives its own message; any other
  exception gives a short message and its traceback goes to the log.

``cancel()`` sets a ``threading.Event`` that the generator's ``stop()`` reads at every step.
Only one job of each *kind* ("finetune", "inference3d", ...) runs at a time: starting a second one
raises :class:`JobBusyError` instead of silently cancelling the first.

:func:`run_job` awaits a job's result under qasync so that UI flows read top to bottom;
:func:`spawn` schedules such a flow on the running (or a newly attached) qasync loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import QApplication

from empanada_desktop.backend.events import Progress, StopFn
from empanada_desktop.core.errors import UserError, describe_os_error, is_write_failure

log = logging.getLogger(__name__)

JobFn = Callable[[StopFn], Iterator[Any]]
"""A callable taking ``stop`` and returning the job's generator."""

_running: dict[str, Job] = {}
_attached_loop: asyncio.AbstractEventLoop | None = None


class JobBusyError(UserError):
    """A job of the same kind is already running."""


class JobFailed(UserError):
    """Raised by :func:`run_job` when the job failed; ``str()`` is the message for the user."""


# How much nicer than the UI thread worker threads run. Threads that torch (OpenMP) and the finetuning data thread start
# from the worker inherit it, so the UI thread wins the CPU whenever it needs it and the job
# still gets every idle cycle.
WORKER_NICENESS = 10

# Longest the UI thread waits for a finished job's thread to end (it ends right after its last signal).
_END_WAIT_MS = 10_000


def _lower_this_thread_priority() -> None:
    """Lower the calling thread's scheduling priority (Linux, where niceness is per thread)."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)  # inherited from the UI thread
        os.setpriority(os.PRIO_PROCESS, thread, min(niceness + WORKER_NICENESS, 19))
    except OSError:  # not permitted in some sandboxes: run at normal priority
        log.debug("could not lower the worker thread's priority", exc_info=True)


class _Runner(QObject):
    """Lives in the worker thread; iterates the generator and emits throttled signals."""

    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str)

    def __init__(self, job_fn: JobFn, stop_event: threading.Event, min_interval: float,
                 clock: Callable[[], float]):
        super().__init__()
        self._job_fn = job_fn
        self._stop_event = stop_event
        self._min_interval = min_interval
        self._clock = clock

    @Slot()
    def run(self) -> None:
        _lower_this_thread_priority()
        generator = None
        pending: Progress | None = None
        last_progress_at = float("-inf")
        try:
            generator = self._job_fn(self._stop_event.is_set)
            while True:
                try:
                    item = next(generator)
                except StopIteration as stop:
                    result = stop.value
                    break
                if isinstance(item, Progress):
                    now = self._clock()
                    if now - last_progress_at >= self._min_interval:
                        self.event.emit(item)
                        last_progress_at = now
                        pending = None
                    else:
                        pending = item
                    continue
                if pending is not None:
                    self.event.emit(pending)
                    pending = None
                self.event.emit(item)
            if pending is not None:
                self.event.emit(pending)
            self.finished.emit(result)
        except UserError as error:
            log.info("job stopped with a user error: %s", error)
            self.failed.emit(str(error))
        except Exception as error:  # noqa: BLE001 - every failure must reach the user as a message
            if is_write_failure(error):  # disk full, read-only, no permission: one line, no traceback
                log.info("job stopped by a disk problem: %s", error)
                self.failed.emit(describe_os_error(error))
                return
            log.exception("job failed")
            self.failed.emit(
                f"The job stopped because of an unexpected error ({type(error).__name__}: {error}). "
                "The full details were written to the log; please include them if you report it."
            )
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing the job generator failed")
            # The thread ends by itself once the job is over, so that Job.wait() from the UI
            # thread returns without needing the UI thread to deliver the finished signal first.
            QThread.currentThread().quit()


class Job(QObject):
    """One backend generator run in its own QThread. Create, connect signals, then ``start()``."""

    event = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    done = Signal()  # after finished or failed, once the thread has ended

    def __init__(self, kind: str, job_fn: JobFn, *, min_interval: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, parent: QObject | None = None):
        super().__init__(parent)
        self.kind = kind
        self._job_fn = job_fn
        self._min_interval = min_interval
        self._clock = clock
        self._stop_event = threading.Event()
        self._thread: QThread | None = None
        self._runner: _Runner | None = None
        self.result: Any = None
        self.error: str | None = None
        self._state = "new"  # new -> running -> finished | failed

    @property
    def is_running(self) -> bool:
        return self._state == "running"

    @property
    def cancel_requested(self) -> bool:
        return self._stop_event.is_set()

    @property
    def state(self) -> str:
        return self._state

    def start(self) -> None:
        """Start the job; raises JobBusyError if a job of the same kind is running."""
        if self._state != "new":
            raise RuntimeError("a Job can be started only once")
        other = _running.get(self.kind)
        if other is not None and other.is_running:
            raise JobBusyError(
                f"A {self.kind} job is already running. Wait for it to finish or cancel it first."
            )
        _running[self.kind] = self
        self._state = "running"
        self._thread = QThread()
        self._thread.setObjectName(f"job-{self.kind}")
        self._runner = _Runner(self._job_fn, self._stop_event, self._min_interval, self._clock)
        self._runner.moveToThread(self._thread)
        self._runner.event.connect(self._on_event)
        self._runner.finished.connect(self._on_finished)
        self._runner.failed.connect(self._on_failed)
        self._thread.started.connect(self._runner.run)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the generator to stop; it honours it within one step and then finishes normally."""
        if self.is_running:
            log.info("cancel requested for the %s job", self.kind)
        self._stop_event.set()

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the worker thread ended (for shutdown); True if it did."""
        if self._thread is None:
            return True
        return self._thread.wait(timeout_ms)

    @Slot(object)
    def _on_event(self, item: object) -> None:
        self.event.emit(item)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        self.result = result
        self._end("finished")
        self.finished.emit(result)
        self.done.emit()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self.error = message
        self._end("failed")
        self.failed.emit(message)
        self.done.emit()

    def _end(self, state: str) -> None:
        # The runner returns right after its last emit, so this wait is short; joining here means
        # that a handler may start the next job of this kind at once.
        self._state = state
        if self._thread is not None:
            self._thread.quit()
            if not self._thread.wait(_END_WAIT_MS):
                log.warning("the %s job's thread did not end within %d s", self.kind, _END_WAIT_MS // 1000)
        if _running.get(self.kind) is self:
            del _running[self.kind]


def running_job(kind: str) -> Job | None:
    """The job of ``kind`` that is running now, if any."""
    job = _running.get(kind)
    return job if job is not None and job.is_running else None


def running_jobs() -> list[Job]:
    """Every job running now."""
    return [job for job in _running.values() if job.is_running]


def cancel_all(timeout_ms: int = 30000) -> None:
    """Cancel every running job and wait for its thread (call when the app closes)."""
    for job in list(_running.values()):
        job.cancel()
        job.wait(timeout_ms)


def ensure_loop() -> asyncio.AbstractEventLoop:
    """The running asyncio loop; without one (tests, screenshots) attach qasync to the Qt loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    global _attached_loop
    if _attached_loop is None:
        import qasync

        app = QApplication.instance()
        if app is None:
            raise RuntimeError("a QApplication must exist before UI flows can run")
        _attached_loop = qasync.QEventLoop(app, already_running=True)
    # One loop per process, re-attached after detach_loop(): a closed qasync loop cannot be
    # replaced by a fresh one on the same QApplication reliably.
    asyncio.set_event_loop(_attached_loop)
    asyncio.events._set_running_loop(_attached_loop)
    return _attached_loop


def detach_loop() -> None:
    """Stop presenting the attached loop as running (tests call this so that later tests, which
    may run their own asyncio loop, see none). Its pending callbacks run when it is re-attached."""
    if _attached_loop is None:
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is _attached_loop:
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)


async def run_job(job: Job) -> Any:
    """Start ``job`` (unless it already runs) and return its result; raises JobFailed on failure."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def on_finished(result: object) -> None:
        if not future.done():
            future.set_result(result)

    def on_failed(message: str) -> None:
        if not future.done():
            future.set_exception(JobFailed(message))

    job.finished.connect(on_finished)
    job.failed.connect(on_failed)
    if job.state == "new":
        job.start()
    elif job.state == "finished":
        on_finished(job.result)
    elif job.state == "failed":
        on_failed(job.error or "The job failed.")
    return await future


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Future:
    """Schedule a UI flow; exceptions it does not handle are logged, never lost."""
    loop = ensure_loop()
    task = asyncio.ensure_future(coro, loop=loop)

    def report(finished: asyncio.Future) -> None:
        if not finished.cancelled() and finished.exception() is not None:
            error = finished.exception()
            log.error("UI flow failed", exc_info=(type(error), error, error.__traceback__))

    task.add_done_callback(report)
    return task
