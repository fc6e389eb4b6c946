"""What a resumed run already did, from its run folder: the iterations planned, and the
progress and validations logged before it stopped, so the run page shows the whole curve."""

from __future__ import annotations

import logging
from pathlib import Path

from empanada_desktop.backend.events import Progress, Validated

log = logging.getLogger(__name__)


def earlier_events(run_dir: str | Path) -> tuple[int, list]:
    """``(total iterations, [Progress | Validated, ...])`` logged in ``run_dir/metrics.jsonl``."""
    from empanada_desktop.backend.finetune import run_folder
    from empanada_desktop.core.errors import UserError

    try:
        total = run_folder.read_config(run_dir).iterations
        records = run_folder.read_metrics(run_dir)
    except (UserError, OSError, ValueError) as error:
        log.info("no earlier curve for %s: %s", run_dir, error)
        return 0, []
    events: list = []
    for record in records:
        step = int(record.get("step", 0))
        if "losses" in record:
            events.append(Progress(step=step, total=total, losses=dict(record["losses"]),
                                   lr=record.get("lr"), seconds_per_step=record.get("seconds")))
        elif "validation" in record:
            events.append(Validated(step=step, metrics=dict(record["validation"]),
                                    baseline=bool(record.get("baseline"))))
    return total, events
