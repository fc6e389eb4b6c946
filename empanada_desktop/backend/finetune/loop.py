"""The finetuning loop: ``finetune(config, stop) -> Iterator[Event]``, returning ``FinetuneResult``.

One iteration is one optimiser step (never empanada's epoch arithmetic). Batch ``k`` depends only
on ``(seed, k)`` and the torch generator is re-seeded from ``(seed, k)`` before step ``k``, so a
run stopped after any step and resumed from its checkpoint follows the uninterrupted run's loss
curve. ``stop()`` is checked before every step; on stop the loop saves ``last.pt`` and returns.

The run reads top to bottom: ``_prepare`` (config, model, data, optimiser), ``_start_or_resume``
(a fresh run folder, or the state of its last checkpoint), ``_train`` (the steps, with
validations and checkpoints), ``_finish`` (export and register).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from empanada_desktop import __version__
from empanada_desktop.backend import distributed
from empanada_desktop.backend.events import CheckpointSaved, Event, Message, Progress, StopFn, Validated, never_stop
from empanada_desktop.backend.finetune import disk_space, health, run_folder, setup
from empanada_desktop.backend.finetune.checkpoints import (
    CHECKPOINT_VERSION,
    CheckpointWriteError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.data import Prefetcher, TrainingData, read_roots
from empanada_desktop.backend.finetune.optim import load_optimizer_state, make_optimizer, make_scheduler
from empanada_desktop.backend.finetune.precision import Precision, choose_precision
from empanada_desktop.backend.finetune.setup import trainable_counts
from empanada_desktop.backend.finetune.trainer import Trainer
from empanada_desktop.core.errors import ConfigError, DiskError, UserError, describe_os_error, user_message

__all__ = ["FinetuneResult", "estimate_seconds_per_step", "finetune", "trainable_counts", "validation_steps"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneResult:
    run_dir: Path
    model_name: str
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    final_metrics: dict[str, float] = field(default_factory=dict)
    exported_pth: Path | None = None
    exported_yaml: Path | None = None
    steps_done: int = 0
    stopped: bool = False
    best_step: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    health_problem: str | None = None  # why the health monitor stopped the run (see health.py)


def validation_steps(iterations: int, validations: int) -> set[int]:
    """Steps after which to validate: ``validations`` evenly spaced, always including the last."""
    if validations <= 0:
        return set()
    return {max(1, round(k * iterations / validations)) for k in range(1, validations + 1)}


@dataclass
class _Run:
    """One run in progress: what ``_prepare`` built and what the steps change."""

    config: FinetuneConfig
    resuming: bool
    device: torch.device
    precision: Precision
    model_config: Any
    trainer: Trainer
    data: TrainingData
    val_pairs: list
    optimizer: Any
    scheduler: Any
    scaler: Any
    run_dir: Path = Path()
    step: int = 0
    # Kept in the checkpoint's "extra": baseline and latest validation, best {step, value, metrics}.
    state: dict[str, Any] = field(default_factory=lambda: {"baseline": {}, "metrics": {}, "best": None})

    @property
    def key_metric(self) -> str:
        return "pq" if getattr(self.model_config, "is_instance", True) else "iou"

    def checkpoint(self) -> dict[str, Any]:
        """The one checkpoint dict (keys: see ``checkpoints.py``)."""
        return {
            "model": self.trainer.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "config": self.config.to_dict() | {"resume": None},
            "rng": rng_state(),
            "version": CHECKPOINT_VERSION,
            "extra": dict(self.state),
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        self.trainer.model.load_state_dict(checkpoint["model"])
        load_optimizer_state(self.optimizer, checkpoint["optimizer"], self.trainer.model)
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        set_rng_state(checkpoint["rng"])
        self.step = int(checkpoint["step"])
        self.state.update(checkpoint.get("extra", {}))

    def save(self, path: Path, kind: str) -> CheckpointSaved | Message:
        """Write a checkpoint; a disk failure is reported (a warning Message), not fatal."""
        if not distributed.is_main():  # under torchrun only rank 0 writes
            return CheckpointSaved(step=self.step, path=path, kind=kind)
        try:
            return CheckpointSaved(step=self.step, path=save_checkpoint(path, self.checkpoint()), kind=kind)
        except CheckpointWriteError as error:
            log.warning("%s", error)
            retry = "" if kind == "stop" else " Training goes on; the next checkpoint will be tried as planned."
            return Message(f"Could not save the checkpoint at step {self.step}: {error}{retry}", level="warning")


def finetune(config: FinetuneConfig, stop: StopFn = never_stop) -> Iterator[Event]:
    """Finetune ``config.model`` on ``config.train_dirs``; see the module docstring.

    Yields ``Message`` (setup notes, trainable parameter counts), ``Validated`` (baseline and
    during training), ``Progress`` (every step) and ``CheckpointSaved`` events.

    Raises:
        UserError: bad settings or data, out of memory, disk full (with what to do).
    """
    stop = distributed.agreed_stop(stop)  # every process stops after the same step
    run = yield from _prepare(config)
    yield from _start_or_resume(run)
    with run_folder.RunLog(run.run_dir) as runlog:
        runlog.info("run %s: %s", "resumed" if run.resuming else "started", run.config.to_dict())
        finished = yield from _train(run, stop, runlog)
        if not finished:
            return FinetuneResult(run.run_dir, run.config.new_name, dict(run.state["baseline"]),
                                  dict(run.state["metrics"]), steps_done=run.step, stopped=True,
                                  health_problem=run.state.get("health", {}).get("problem"))
        return (yield from _finish(run, runlog))


def _prepare(config: FinetuneConfig) -> Iterator[Event]:
    """Check the settings against the model and data; build the trainer, data and optimiser."""
    if config.resume is not None:
        config = run_folder.resume_config(config.resume, device=config.device)
    resuming = config.resume is not None
    device = setup.resolve_device(config.device)
    precision = choose_precision(device, config.precision)
    model, model_config = setup.load_start_model(config)
    config, safe_note = health.resolve_safe_defaults(config, model)
    setup.check_patch_size(config, int(model_config.padding_factor))
    if config.register and not resuming:
        setup.check_new_name_free(config.new_name)
    gamma = config.weight_gamma if config.weight_gamma is not None else float(model_config.weight_gamma)
    data = TrainingData.from_roots(config.train_dirs, weight_gamma=gamma)
    setup.check_batch_size(config, len(data))
    config, model_config, data_lines = setup.fit_to_data(config, model_config, data)
    val_pairs = []
    if config.val_dir is not None and distributed.is_main():
        images, masks, _, _ = read_roots([config.val_dir], what="validation")
        val_pairs = list(zip(images, masks))
    for note in [*dict.fromkeys(data.notes), *data_lines]:
        yield Message(note)

    trainer = Trainer(model, model_config, config, device, precision)
    # Calibrated on step 1's batch whether the run starts or resumes: the same int8 layers.
    if note := trainer.use_frozen_int8(trainer.make_batch_fn(data)(1).images):
        yield Message(note)
    counts = trainer.counts
    yield Message(
        f"Trainable parameters with layers '{config.layers}': {counts[config.layers]:,} "
        + "(" + ", ".join(f"{k}: {v:,}" for k, v in counts.items()) + ")."
    )
    yield Message(f"Training on {device} in {precision.name} ({precision.reason}); {len(data)} training images.")
    if safe_note:
        yield Message(safe_note)
    optimizer = make_optimizer(trainer.model, config.max_lr, config.weight_decay, config.encoder_lr_scale)
    return _Run(
        config=config, resuming=resuming, device=device, precision=precision, model_config=model_config,
        trainer=trainer, data=data, val_pairs=val_pairs, optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config.max_lr, config.iterations, config.pct_start),
        scaler=precision.scaler(),
    )


def _start_or_resume(run: _Run) -> Iterator[Event]:
    """A new run folder with its config.yaml, or the resumed run's last checkpoint loaded."""
    config = run.config
    disk_space.check_run_space(run.trainer.model, config, resuming=run.resuming, validation=bool(run.val_pairs))
    if run.resuming:
        run.run_dir = Path(config.resume)
        run.restore(load_checkpoint(run_folder.last_checkpoint(run.run_dir)))
        run_folder.truncate_metrics(run.run_dir, run.step)
        yield Message(f"Resuming {run.run_dir} after step {run.step} of {config.iterations}.")
        return
    run.run_dir = Path(distributed.from_main(lambda: str(run_folder.new_run_dir(config))))
    run_folder.write_config(
        run.run_dir,
        config,
        {
            "trainable_parameters": run.trainer.counts,
            "device": str(run.device),
            "precision": run.precision.name,
            "training_images": len(run.data),
            "validation_images": len(run.val_pairs),
            "base_model": config.model,
            "empanada_desktop": __version__,
        },
    )


def _validate(run: _Run, runlog: run_folder.RunLog) -> Iterator[Event]:
    """Validate at ``run.step``; keep ``best.pt`` when the key metric improved."""
    metrics = run.trainer.validate(run.val_pairs)
    run.state["metrics"] = metrics
    run_folder.append_metrics(run.run_dir, {"step": run.step, "validation": metrics})
    runlog.info("validation at step %d: %s", run.step, metrics)
    yield Validated(step=run.step, metrics=metrics)
    if warning := health.validation_warning(metrics, run.step):
        runlog.info("validation warning: %s", warning)
        yield Message(warning, level="warning")
    best = run.state["best"]
    value = float(metrics.get(run.key_metric, 0.0))
    if best is None or value > best["value"]:
        run.state["best"] = {"step": run.step, "value": value, "metrics": metrics}
        saved = run.save(run_folder.best_checkpoint(run.run_dir), "best")
        if isinstance(saved, Message):
            run.state["best"] = best  # best.pt still holds the previous best
        yield saved


def _train(run: _Run, stop: StopFn, runlog: run_folder.RunLog) -> Iterator[Event]:
    """The baseline validation, then the steps. Returns False when stopped (checkpoint saved)."""
    config, trainer = run.config, run.trainer
    if run.val_pairs and not run.resuming:
        baseline = trainer.validate(run.val_pairs)
        run.state["baseline"] = run.state["metrics"] = baseline
        run_folder.append_metrics(run.run_dir, {"step": 0, "validation": baseline, "baseline": True})
        runlog.info("baseline validation: %s", baseline)
        yield Validated(step=0, metrics=baseline, baseline=True)
        if warning := health.validation_warning(baseline, 0, baseline=True):
            yield Message(warning, level="warning")

    val_at = validation_steps(config.iterations, config.validations) if run.val_pairs else set()
    last = run_folder.last_checkpoint(run.run_dir)
    durations: list[float] = []
    monitor = health.monitor_for(run, val_at)
    prefetcher = Prefetcher(trainer.make_batch_fn(run.data), range(run.step + 1, config.iterations + 1),
                            depth=config.prefetch_batches)
    try:
        for batch in prefetcher:
            if stop():
                event = run.save(last, "stop")
                runlog.info("stopped after step %d; checkpoint %s", run.step, getattr(event, "path", "not saved"))
                yield event
                yield Message(f"Stopped after step {run.step}. Resume with: empanada-desktop finetune --resume {run.run_dir}")
                return False
            started = time.perf_counter()
            torch.manual_seed(config.seed * 1_000_003 + batch.step)
            try:
                losses = trainer.train_step(batch, run.optimizer, run.scaler)
            except Exception as error:  # noqa: BLE001 - out of memory is recognised, the rest re-raised
                if setup.is_out_of_memory(error):
                    raise setup.out_of_memory_error(config, run.device) from error
                raise
            lr = run.optimizer.param_groups[0]["lr"]
            run.scheduler.step()
            run.step = step = batch.step
            durations.append(time.perf_counter() - started)
            recent = durations[1:][-10:] or durations[-1:]
            seconds = sum(recent) / len(recent)
            run_folder.append_metrics(run.run_dir, {"step": step, "losses": losses, "lr": lr, "seconds": durations[-1]})
            runlog.info("step %d/%d loss %.5f lr %.3g %.2fs", step, config.iterations, losses["total"], lr, durations[-1])
            yield Progress(step=step, total=config.iterations, losses=losses, lr=lr, seconds_per_step=seconds,
                           eta_seconds=seconds * (config.iterations - step))
            if monitor is not None:
                verdict = yield from monitor.after_step(run, losses, runlog)
                if verdict.status == "blow-up":
                    yield from health.roll_back(run, verdict, runlog)
                    return False
            if step in val_at:
                yield from _validate(run, runlog)
            if step == config.iterations or (config.checkpoint_every and step % config.checkpoint_every == 0):
                yield run.save(last, "last")
    finally:
        prefetcher.close()
    return True


def _finish(run: _Run, runlog: run_folder.RunLog) -> Iterator[Event]:
    """Export the best (else the last) weights as a .pth/.yaml pair and register them."""
    config, trainer, run_dir, state = run.config, run.trainer, run.run_dir, run.state
    if not distributed.is_main():  # rank 0 exports and registers
        return FinetuneResult(run_dir, config.new_name, steps_done=config.iterations)
    best = state.get("best")
    if best is not None and best["step"] != config.iterations:
        checkpoint = load_checkpoint(run_folder.best_checkpoint(run_dir))
        trainer.model.load_state_dict(checkpoint["model"])
        yield Message(f"Keeping the weights of step {best['step']}, the best on the validation set.")
    trainer.model.eval()
    new_config = setup.with_description(run.model_config, config, config.iterations)
    from empanada_desktop.backend.torchscript import export_empanada

    try:
        pth, yaml_path = export_empanada(trainer.export_model(), new_config, run_dir, config.new_name)
    except (OSError, UserError) as error:
        raise DiskError(
            f"could not save the finetuned model in {run_dir}: {user_message(error, run_dir)} Then run "
            f"'empanada-desktop finetune --resume {run_dir}' to export it (the training is kept); nothing was registered."
        ) from error
    runlog.info("exported %s and %s", pth, yaml_path)
    yield Message(f"Saved {pth.name} and {yaml_path.name} in {run_dir}.")
    if config.register:
        from empanada_desktop.core.registry import ModelRegistry

        registry = ModelRegistry()
        if config.new_name in {m.name for m in registry.list()}:
            raise ConfigError(
                f"a model named {config.new_name!r} was registered meanwhile; the finetuned model is in "
                f"{pth}; register it under another name: empanada-desktop models import {pth} --name NEW_NAME"
            )
        try:
            registry.register(config.new_name, new_config, pth, copy=True)
        except OSError as error:
            raise DiskError(
                f"could not register {config.new_name}: {describe_os_error(error)} Then register {pth}: "
                f"empanada-desktop models import {pth} --name {config.new_name}"
            ) from error
        runlog.info("registered %s", config.new_name)
        yield Message(f"Registered the finetuned model as {config.new_name}.")
    return FinetuneResult(
        run_dir=run_dir,
        model_name=config.new_name,
        baseline_metrics=dict(state.get("baseline") or {}),
        # The metrics of the exported weights: the best validation if there was one.
        final_metrics=dict(best["metrics"] if best else state.get("metrics") or {}),
        exported_pth=pth,
        exported_yaml=yaml_path,
        steps_done=config.iterations,
        best_step=best["step"] if best else None,
        best_metrics=dict(best["metrics"]) if best else {},
    )


def estimate_seconds_per_step(config: FinetuneConfig, steps: int = 2) -> float:
    """Time ``steps`` real optimiser steps (after one warm-up step) on a synthetic batch.

    Uses the config's model, layers, device, precision, batch and patch size, but no data and
    no run folder, so the wizard can call it before the training set is complete.
    """
    device = setup.resolve_device(config.device)
    precision = choose_precision(device, config.precision)
    model, model_config = setup.load_start_model(config)
    config, _ = health.resolve_safe_defaults(config, model)
    setup.check_patch_size(config, int(model_config.padding_factor))
    trainer = Trainer(model, model_config, config, device, precision)
    optimizer = make_optimizer(trainer.model, config.max_lr, config.weight_decay, config.encoder_lr_scale)
    scaler = precision.scaler()
    batch = synthetic_batch(config.batch_size, config.patch_size, seed=config.seed)
    trainer.use_frozen_int8(batch.images)
    try:
        timings = []
        for index in range(max(1, steps) + 1):
            started = time.perf_counter()
            trainer.train_step(batch, optimizer, scaler)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if index:
                timings.append(time.perf_counter() - started)
    except Exception as error:  # noqa: BLE001 - out of memory is recognised, the rest re-raised
        if setup.is_out_of_memory(error):
            raise setup.out_of_memory_error(config, device) from error
        raise
    return sum(timings) / len(timings)


def synthetic_batch(batch_size: int, patch_size: int, seed: int = 0):
    """A batch of noise images with a few square 'organelles' (for timing only)."""
    from empanada_desktop.backend.finetune.data import Batch
    from empanada_desktop.backend.finetune.targets import make_targets

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 1, patch_size, patch_size, generator=generator)
    masks = torch.zeros(batch_size, patch_size, patch_size, dtype=torch.int64)
    side = max(4, patch_size // 8)
    for index in range(batch_size):
        for label, (y, x) in enumerate(torch.randint(0, patch_size - side, (4, 2), generator=generator).tolist(), 1):
            masks[index, y : y + side, x : x + side] = label
    return Batch(step=0, images=images, targets=make_targets(masks))
