"""Training health: safe defaults for unnormalised encoders, and a monitor that stops a blow-up.

Why: MitoNet_v1's released files have the encoder's batch norms fused into its convolutions, so
nothing in the encoder renormalises its activations. AdamW moves every weight by about the
learning rate per step whatever its gradient, which is a large *relative* change for the small
weights of a deep ResNet; compounded over ~50 convolutions the scale of the encoder's output
grows by orders of magnitude within 10-20 steps at max_lr 0.003 (measured: 9 -> 1e14 on real
data). The decoder's batch norm then divides everything by that scale, encoder gradients
underflow and the model predicts nothing, while the loss merely stops improving.

Two guards:

- ``resolve_safe_defaults``: for an encoder without normalisation layers, the encoder trains at
  ``SAFE_ENCODER_LR_SCALE`` times the learning rate and gradients are clipped to
  ``SAFE_GRAD_CLIP`` (values measured by ``benchmarks/training_health.py``, table in
  ``benchmarks/README.md``). The chosen values are written into the run's config.yaml.
- ``HealthMonitor``: after every step, non-finite loss or gradients and the gradient norm of the
  heads and of the encoder; every ``health_every`` steps (and at checkpoint and validation steps,
  so that a saved checkpoint is always a checked one) the RMS of each encoder stage's output on
  a fixed training patch (the probe). Drift (a scale 10x off its start, or a gradient norm
  whose last three steps are 100x the ten before) is a warning; a blow-up (non-finite values, a
  scale 100x off its start) stops the run. Gradient norms alone never stop a run: on small
  models and batches they spike by 10^4 for a step while training is fine (measured in the
  tests), and when an unnormalised encoder blows up its output scale says so first. ``roll_back`` then restores the last
  checkpoint that was healthy when saved (else the model as it was before training) and says
  in words what happened and what to try.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import median
from typing import Any

import torch

from empanada_desktop.backend.events import Health, Message
from empanada_desktop.backend.finetune import run_folder
from empanada_desktop.backend.finetune.checkpoints import CheckpointError, load_checkpoint
from empanada_desktop.backend.finetune.config import FinetuneConfig

log = logging.getLogger(__name__)

SAFE_ENCODER_LR_SCALE = 0.01
SAFE_GRAD_CLIP = 1.0
DRIFT_FACTOR = 10.0
BLOW_UP_FACTOR = 100.0
GRAD_DRIFT_FACTOR = 100.0
RECENT_STEPS = 10
PROBE_IMAGES = 1
STAGE_NAMES = ("stem", "stage1", "stage2", "stage3", "stage4")

WHAT_TO_TRY = (
    "Try: layers 'stage4' or 'none'; or a lower encoder learning rate (encoder_lr_scale 0.003, "
    "--encoder-lr-scale); or gradient clipping (grad_clip 1, --grad-clip); or a lower max_lr (--max-lr)."
)


# -- safe defaults ------------------------------------------------------------------------------


def encoder_is_normalised(model: torch.nn.Module) -> bool:
    """Whether the model's encoder has normalisation layers (True when there is no ``encoder``)."""
    from empanada_desktop.backend.models.stages import _is_batchnorm

    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, torch.nn.Module):
        return True
    norm_names = {"GroupNorm", "LayerNorm", "InstanceNorm2d"}
    return any(_is_batchnorm(module) or type(module).__name__ in norm_names
               or getattr(module, "original_name", None) in norm_names for module in encoder.modules())


def resolve_safe_defaults(config: FinetuneConfig, model: torch.nn.Module) -> tuple[FinetuneConfig, str | None]:
    """``config`` with ``encoder_lr_scale`` and ``grad_clip`` chosen where they are None, and a
    note for the user when the safe recipe for an unnormalised encoder was applied."""
    if config.encoder_lr_scale is not None and config.grad_clip is not None:
        return config, None
    # With layers "none" the encoder does not train: empanada's recipe, unchanged.
    unnormalised = config.layers != "none" and not encoder_is_normalised(model)
    scale = config.encoder_lr_scale if config.encoder_lr_scale is not None else (
        SAFE_ENCODER_LR_SCALE if unnormalised else 1.0)
    clip = config.grad_clip if config.grad_clip is not None else (SAFE_GRAD_CLIP if unnormalised else 0.0)
    resolved = config.replace(encoder_lr_scale=float(scale), grad_clip=float(clip))
    if not unnormalised:
        return resolved, None
    note = (
        f"{config.model}'s encoder has no batch norms (they are fused into its convolutions), so "
        f"training it at the full learning rate can blow it up. Safe settings: the encoder trains at "
        f"{scale:g} x the learning rate ({config.max_lr * scale:.2g}), gradients clipped at {clip:g} "
        "(recorded in the run's config.yaml; set encoder_lr_scale / grad_clip to change them)."
    )
    return resolved, note


# -- measuring --------------------------------------------------------------------------------


def _grads_by_part(optimizer: torch.optim.Optimizer) -> dict[str, list[torch.Tensor]]:
    by_part: dict[str, list[torch.Tensor]] = {}
    for group in optimizer.param_groups:
        grads = [p.grad for p in group["params"] if p.grad is not None]
        if grads:
            by_part.setdefault(group.get("name", "all"), []).extend(grads)
    return by_part


def _part_norms(by_part: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            for name, grads in by_part.items()}


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float) -> dict[str, torch.Tensor]:
    """Scale all gradients so that their total L2 norm is at most ``max_norm`` (as
    ``clip_grad_norm_``); returns each part's norm before clipping (tensors, no sync)."""
    by_part = _grads_by_part(optimizer)
    norms = _part_norms(by_part)
    if norms:
        total = torch.linalg.vector_norm(torch.stack(list(norms.values())))
        factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_([g for grads in by_part.values() for g in grads], factor)
    return norms


def gradient_norms(optimizer: torch.optim.Optimizer, measured: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """L2 norm of the gradients of each named part ("heads", "encoder"), from ``measured`` when
    clipping already computed them; one device sync."""
    norms = measured if measured is not None else _part_norms(_grads_by_part(optimizer))
    if not norms:
        return {}
    return dict(zip(norms, torch.stack(list(norms.values())).cpu().tolist()))


def encoder_scales(trainer: Any, probe: torch.Tensor) -> dict[str, float]:
    """RMS of each encoder stage's output on ``probe`` (eval mode, no gradients)."""
    encoder = getattr(trainer.model, "encoder", None)
    if encoder is None:
        return {}
    trainer.model.eval()
    try:
        with torch.no_grad(), trainer.precision.autocast():
            images = probe.to(trainer.device)
            if trainer.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            features = encoder(images)
    finally:
        trainer.train_mode()
    if isinstance(features, torch.Tensor):
        features = [features]
    elif isinstance(features, dict):
        features = list(features.values())
    names = STAGE_NAMES if len(features) == len(STAGE_NAMES) else [f"level{i}" for i in range(len(features))]
    values = torch.stack([f.float().pow(2).mean().sqrt() for f in features]).cpu().tolist()
    return dict(zip(names, values))


# -- the monitor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    status: str  # "ok", "drifting" or "blow-up"
    text: str = ""


class HealthMonitor:
    """Checks one run's steps; its memory (start scales, status) lives in ``state``, which the
    loop saves in every checkpoint, so a resumed run compares with the original start."""

    def __init__(self, trainer: Any, optimizer: torch.optim.Optimizer, config: FinetuneConfig,
                 probe: torch.Tensor, state: dict[str, Any], check_steps: set[int] = frozenset()) -> None:
        self.trainer = trainer
        self.optimizer = optimizer
        self.config = config
        self.probe = probe[:PROBE_IMAGES]
        self.state = state
        self.check_steps = set(check_steps)
        self.recent: dict[str, list[float]] = {}
        self.warned = False
        state.setdefault("status", "ok")
        if not state.get("start_scales"):
            state["start_scales"] = encoder_scales(trainer, self.probe)

    def samples_at(self, step: int) -> bool:
        every = self.config.health_every
        checkpoint = self.config.checkpoint_every and step % self.config.checkpoint_every == 0
        return step == 1 or step % every == 0 or step == self.config.iterations or bool(checkpoint) \
            or step in self.check_steps

    def check(self, step: int, losses: dict[str, float]) -> tuple[dict[str, Any], Verdict]:
        """The health record of ``step`` (for metrics.jsonl) and its verdict."""
        started = time.perf_counter()
        record: dict[str, Any] = {"grad_norm": gradient_norms(self.optimizer, getattr(self.trainer, "grad_norms", None))}
        if self.samples_at(step):
            record["encoder_scale"] = encoder_scales(self.trainer, self.probe)
            record["start_scale"] = dict(self.state["start_scales"])
        record["seconds"] = time.perf_counter() - started
        verdict = self._judge(losses, record)
        record["status"] = verdict.status
        if verdict.status != "blow-up":
            for part, value in record["grad_norm"].items():
                self.recent.setdefault(part, []).append(value)
                del self.recent[part][:-(RECENT_STEPS + 3)]
        if "encoder_scale" in record:
            self.state["status"] = verdict.status
        return record, verdict

    def _judge(self, losses: dict[str, float], record: dict[str, Any]) -> Verdict:
        bad_losses = [name for name, value in losses.items() if not math.isfinite(value)]
        if bad_losses:
            return Verdict("blow-up", f"the loss became {losses[bad_losses[0]]} ({', '.join(bad_losses)}).")
        for part, value in record["grad_norm"].items():
            if not math.isfinite(value):
                return Verdict("blow-up", f"the gradients of the {part} became {value}.")
        worst = ""
        for stage, value in record.get("encoder_scale", {}).items():
            start = self.state["start_scales"].get(stage)
            if not math.isfinite(value):
                return Verdict("blow-up", f"the encoder's {stage} output became {value}.")
            if not start or start <= 0 or value <= 0:
                continue
            factor = max(value / start, start / value)
            change = "grew" if value > start else "shrank"
            words = (f"the encoder's {stage} output {change} {factor:.3g}x since the start "
                     f"({start:.3g} -> {value:.3g}).")
            if factor >= BLOW_UP_FACTOR:
                return Verdict("blow-up", words)
            if factor >= DRIFT_FACTOR and not worst:
                worst = words
        for part, value in record["grad_norm"].items():
            # Sustained growth, not a single spike (small models' gradients spike legitimately):
            # the median of the last 3 steps against the median of the 10 before them.
            history = [*self.recent.get(part, []), value]
            if len(history) < 6:
                continue
            before, now = median(history[:-3]), median(history[-3:])
            if before > 0 and now / before >= GRAD_DRIFT_FACTOR and not worst:
                worst = (f"the gradient norm of the {part} grew {now / before:.3g}x within a few steps "
                         f"({before:.3g} -> {now:.3g}).")
        return Verdict("drifting", worst) if worst else Verdict("ok")

    def after_step(self, run: Any, losses: dict[str, float], runlog: Any) -> Iterator[Any]:
        """Check ``run.step``: record it, yield ``Health`` (and a warning the first time the
        model drifts); returns the Verdict."""
        record, verdict = self.check(run.step, losses)
        run_folder.append_metrics(run.run_dir, {"step": run.step, "health": record})
        yield Health(step=run.step, grad_norms=record["grad_norm"], encoder_scales=record.get("encoder_scale", {}),
                     start_scales=dict(self.state["start_scales"]), status=verdict.status, text=verdict.text)
        if verdict.status == "drifting" and not self.warned:
            self.warned = True
            runlog.info("health warning at step %d: %s", run.step, verdict.text)
            yield Message(f"Warning at step {run.step}: {verdict.text} The model may be drifting; "
                          f"training goes on, and stops by itself if this grows to a blow-up.", level="warning")
        return verdict


# -- rolling back ---------------------------------------------------------------------------------


def roll_back(run: Any, verdict: Verdict, runlog: Any) -> Iterator[Any]:
    """After a blow-up at ``run.step``: restore the last checkpoint that was healthy when saved,
    or the model as it was before training, and say what happened. Nothing broken is saved."""
    failed_step = run.step
    target = None
    for path in (run_folder.last_checkpoint(run.run_dir), run_folder.best_checkpoint(run.run_dir)):
        if not path.is_file():
            continue
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as error:
            log.warning("cannot roll back to %s: %s", path, error)
            continue
        healthy = checkpoint.get("extra", {}).get("health", {}).get("status", "ok") == "ok"
        if healthy and int(checkpoint["step"]) < failed_step and (target is None or checkpoint["step"] > target[1]["step"]):
            target = (path, checkpoint)
    last = run_folder.last_checkpoint(run.run_dir)
    if target is not None:
        path, checkpoint = target
        run.restore(checkpoint)
        if path != last:
            run.save(last, "last")
        where = f"step {run.step} (checkpoint {last})"
        resume = f" The run folder is left at step {run.step}; resuming it repeats the same settings."
    else:
        from empanada_desktop.backend.finetune.setup import load_base_model

        base, _ = load_base_model(run.config.model)
        run.trainer.model.load_state_dict(base.state_dict())
        if last.is_file():  # saved while drifting: keep it for inspection, but not as the resumable state
            last.replace(last.with_name(f"unhealthy-step{int(load_checkpoint(last)['step'])}.pt"))
        run.step = 0
        where = "the model as it was before training (no healthy checkpoint was saved yet)"
        resume = ""
    text = (f"Training stopped at step {failed_step} of {run.config.iterations}: {verdict.text} This is a blow-up "
            f"that would leave a model that predicts nothing. Rolled back to {where}; nothing was exported.{resume} "
            f"{WHAT_TO_TRY}")
    run.state["health"] = dict(run.state.get("health", {}), problem=text, failed_step=failed_step)
    run_folder.append_metrics(run.run_dir, {"step": failed_step, "health_stop": {"reason": verdict.text,
                                                                                  "rolled_back_to": run.step}})
    runlog.info("health stop: %s", text)
    yield Message(text, level="warning")


def monitor_for(run: Any, check_steps: set[int]) -> HealthMonitor | None:
    """The monitor of ``run`` (None when ``health_check`` is off); its probe is the first patch of
    the step-0 batch, which training never uses, so it is the same on resume."""
    if not run.config.health_check:
        return None
    probe = run.trainer.make_batch_fn(run.data)(0).images
    return HealthMonitor(run.trainer, run.optimizer, run.config, probe, run.state.setdefault("health", {}),
                         check_steps)


def validation_warning(metrics: dict[str, float], step: int, baseline: bool = False) -> str | None:
    """A warning when the model predicts no objects at all on the validation images (no true
    or false positive), which a low score alone does not tell."""
    if "tp" not in metrics or "fp" not in metrics or metrics["tp"] + metrics["fp"] > 0:
        return None
    if baseline:
        return ("The model before training predicts no objects at all on the validation images; "
                "finetuning starts from scratch, so expect to need more iterations and patches.")
    return (f"At step {step} the model predicts no objects at all on the validation images. If it did "
            "before, training has broken it: stop, and start again with layers 'stage4' or 'none' or a "
            "lower learning rate; the best validation so far is the one exported.")
