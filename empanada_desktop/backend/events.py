"""Events yielded by long backend jobs (finetuning, 3D inference).

Jobs are plain generators: ``job(config, stop) -> Iterator[Event]`` whose ``return`` value is the
result. They check ``stop()`` at every step. ``ui/worker.py`` re-emits these as Qt signals; the CLI
draws a progress bar from them. The classes are small frozen dataclasses so they cross threads
safely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

StopFn = Callable[[], bool]


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class Progress:
    """One unit of work finished (an optimiser step, a slice)."""

    step: int
    total: int
    losses: Mapping[str, float] = field(default_factory=dict)
    lr: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Validated:
    """Validation metrics (iou, pq, f1 ...) at ``step``; ``baseline`` for the model before training."""

    step: int
    metrics: Mapping[str, float]
    baseline: bool = False


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: Path
    kind: str = "last"  # "last", "best" or "stop"


@dataclass(frozen=True)
class Message:
    """Something to tell the user (a note about the data, a fallback taken)."""

    text: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class Health:
    """The finetuning health check of ``step`` (``backend/finetune/health.py``).

    ``grad_norms`` per part ("heads", "encoder"); ``encoder_scales`` per encoder stage (RMS of
    its output on a fixed probe; empty on steps that were not sampled) and their values at the
    start; ``status`` is "ok", "drifting" or "blow-up", ``text`` says why in plain words.
    """

    step: int
    grad_norms: Mapping[str, float] = field(default_factory=dict)
    encoder_scales: Mapping[str, float] = field(default_factory=dict)
    start_scales: Mapping[str, float] = field(default_factory=dict)
    status: str = "ok"
    text: str = ""


Event = Progress | Validated | CheckpointSaved | Message | Health


def run_to_end(job: Iterator[Event], on_event: Callable[[Event], None] | None = None) -> tuple[list[Event], Any]:
    """Run a job generator headless: every event it yields (each also passed to ``on_event``) and
    the value it returns."""
    events = []
    while True:
        try:
            event = next(job)
        except StopIteration as finished:
            return events, finished.value
        events.append(event)
        if on_event is not None:
            on_event(event)
