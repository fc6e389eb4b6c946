"""The settings page's work outside Qt: the checks before a run starts and the worker jobs that
count trainable parameters and measure an iteration (backend imported lazily, so that the wizard
opens without torch)."""

from __future__ import annotations


def check_before_start(config, counts: dict[str, int]) -> None:
    """Before the run starts: the new name is free (the results page registers it) and the disks
    have room for the checkpoints, the export and the registered copy; raises UserError."""
    from empanada_desktop.backend.finetune.disk_space import check_space_from_counts
    from empanada_desktop.backend.finetune.setup import check_new_name_free

    check_new_name_free(config.new_name)
    check_space_from_counts(config, counts, register=True)


def counts_job(model):
    """Worker job: trainable parameters per finetunable-layer choice of a registered model (its
    name) or of a new model (the new-model page's settings, a dict)."""

    def job(stop):
        if isinstance(model, dict):
            from empanada_desktop.backend.finetune.new_model import trainable_counts_new

            return trainable_counts_new(model)
        from empanada_desktop.backend.finetune.loop import trainable_counts

        return trainable_counts(model)
        yield  # pragma: no cover - makes this a generator

    return job


def estimate_job(config, steps: int = 2):
    """Worker job: seconds per iteration of ``config`` measured over ``steps`` iterations."""

    def job(stop):
        from empanada_desktop.backend.finetune.loop import estimate_seconds_per_step

        return estimate_seconds_per_step(config, steps=steps)
        yield  # pragma: no cover - makes this a generator

    return job
