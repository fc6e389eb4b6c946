"""``FinetuneConfig``: every setting of one finetuning run, validated where it is made.

The config is plain data (no torch); it is written next to the run's outputs as ``config.yaml``
and read back by ``--resume``. Checks that need the model (patch size against the model's
padding factor) or the data (enough images for the batch) happen when the run starts, in
``loop.py``, with the same kind of message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.finetunable_layers import (  # noqa: F401 (the config's vocabulary)
    ENCODER_STAGES,
    LAYER_CHOICES,
    check_layers,
)
from empanada_desktop.core.names import check_model_name

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one finetuning run.

    Attributes:
        model: name of the registered model to start from (e.g. ``MitoNet_v1``).
        train_dirs: one or more training roots in empanada's layout (``<source>/images``,
            ``<source>/masks``).
        val_dir: optional validation root in the same layout.
        layers: which encoder stages train: none | stage4 | stage3 | stage2 | stage1 | all.
            The decoders and heads always train.
        iterations: optimiser steps (not epochs).
        patch_size: side of the square training patches, pixels.
        batch_size: patches per optimiser step.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        new_name: name the finetuned model is registered under.
        out_dir: run folder; default ``<app home>/runs/<new_name>-<timestamp>``.
        resume: a run folder to continue (its ``config.yaml`` wins over these settings, except
            ``device``).
        seed: seeds data order, augmentation and the model's random sampling.
        max_lr, weight_decay, pct_start: AdamW + OneCycleLR settings (empanada's defaults).
        precision: ``auto`` picks bf16/fp16 autocast where it helps, else fp32.
        checkpoint_every: save ``last.pt`` every N steps (0: only at the end and on stop).
        validations: how many times to validate during the run (besides the baseline).
        weight_gamma: per-source sampling exponent; None takes the model config's value.
        duplicate_patches: allow fewer images than the batch size by repeating (differently
            augmented) patches in a batch.
        prefetch_batches: batches prepared ahead by the background data thread.
        register: register the finetuned model in the app's model registry at the end.
        encoder_lr_scale: the encoder's learning rate is ``max_lr`` times this (decoders and
            heads train at ``max_lr``). None: chosen when the run starts (``health.py``:
            ``SAFE_ENCODER_LR_SCALE`` for encoders without normalisation, such as MitoNet_v1's
            batch-norm-fused one, else 1) and written into the run's config.yaml.
        grad_clip: clip the gradient norm of all trainable parameters to this (0: off). None:
            chosen like ``encoder_lr_scale``.
        health_check: watch every step for a blow-up (non-finite loss or gradients, encoder
            output scale or gradient norm growing by orders of magnitude); stop and roll back.
        health_every: measure the encoder's output scale every N steps (and at checkpoints).
        frozen_int8: run the frozen encoder stages in int8 (``frozen_int8.py``): ``auto`` on a
            CPU training in float32 (or in bf16 where ``frozen_int8.int8_beats_bf16``), ``on``, ``off``.
    """

    model: str
    train_dirs: tuple[Path, ...]
    new_name: str
    val_dir: Path | None = None
    layers: str = "none"
    iterations: int = 100
    patch_size: int = 256
    batch_size: int = 16
    device: str = "auto"
    out_dir: Path | None = None
    resume: Path | None = None
    seed: int = 0
    max_lr: float = 0.003
    weight_decay: float = 0.1
    pct_start: float = 0.3
    precision: str = "auto"
    checkpoint_every: int = 50
    validations: int = 4
    weight_gamma: float | None = None
    duplicate_patches: bool = False
    prefetch_batches: int = 2
    register: bool = True
    encoder_lr_scale: float | None = None
    grad_clip: float | None = None
    health_check: bool = True
    health_every: int = 5
    frozen_int8: str = "auto"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_dirs", tuple(Path(d) for d in _as_list(self.train_dirs)))
        if self.val_dir is not None:
            object.__setattr__(self, "val_dir", Path(self.val_dir))
        for name in ("out_dir", "resume"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if not self.model or not isinstance(self.model, str):
            raise ConfigError("model: choose the registered model to finetune (e.g. MitoNet_v1).")
        if not self.train_dirs:
            raise ConfigError("train_dirs: give at least one training folder (empanada layout).")
        check_model_name(self.new_name, field="new_name")  # the one rule, also the exporter's and the registry's
        check_layers(self.layers)
        _positive_int("iterations", self.iterations)
        _positive_int("batch_size", self.batch_size)
        _positive_int("patch_size", self.patch_size)
        if self.patch_size < 16:
            raise ConfigError(f"patch_size {self.patch_size}: use at least 16 pixels (256 is typical).")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed {self.seed!r}: use a whole number >= 0.")
        if not (0 < float(self.max_lr) <= 1):
            raise ConfigError(f"max_lr {self.max_lr!r}: use a learning rate in (0, 1]; 0.003 is the default.")
        if not (0 <= float(self.weight_decay) < 10):
            raise ConfigError(f"weight_decay {self.weight_decay!r}: use a value in [0, 10); 0.1 is the default.")
        if not (0 < float(self.pct_start) < 1):
            raise ConfigError(f"pct_start {self.pct_start!r}: use a fraction in (0, 1); 0.3 is the default.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}.")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every {self.checkpoint_every!r}: use a whole number >= 0.")
        if not isinstance(self.validations, int) or self.validations < 0:
            raise ConfigError(f"validations {self.validations!r}: use a whole number >= 0.")
        if self.weight_gamma is not None and not (0 <= float(self.weight_gamma) <= 1):
            raise ConfigError(f"weight_gamma {self.weight_gamma!r}: use a value in [0, 1] (0.7 for MitoNet).")
        _positive_int("prefetch_batches", self.prefetch_batches)
        if self.encoder_lr_scale is not None and not (_is_number(self.encoder_lr_scale)
                                                      and 0 < float(self.encoder_lr_scale) <= 1):
            raise ConfigError(f"encoder_lr_scale {self.encoder_lr_scale!r}: use a fraction in (0, 1], or leave it "
                              "empty for the safe default of the model.")
        if self.grad_clip is not None and not (_is_number(self.grad_clip) and 0 <= float(self.grad_clip) < 1e6):
            raise ConfigError(f"grad_clip {self.grad_clip!r}: use a gradient norm >= 0 (0 turns clipping off), or "
                              "leave it empty for the safe default of the model.")
        if not isinstance(self.health_check, bool):
            raise ConfigError(f"health_check {self.health_check!r}: use true or false.")
        _positive_int("health_every", self.health_every)
        if self.frozen_int8 not in ("auto", "on", "off"):
            raise ConfigError(f"frozen_int8 {self.frozen_int8!r}: choose auto, on or off.")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError("device: use auto, cpu, cuda, cuda:N or mps.")

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly dict (paths as strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif f.name == "train_dirs":
                value = [str(p) for p in value]
            elif f.name == "extra":
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"finetune config: unknown setting(s) {', '.join(unknown)}; remove them.")
        missing = [name for name in ("model", "train_dirs", "new_name") if name not in data]
        if missing:
            raise ConfigError(f"finetune config: missing setting(s) {', '.join(missing)}.")
        return cls(**dict(data))


def default_of(field_name: str) -> Any:
    """The default of a ``FinetuneConfig`` setting (``default_of("iterations") == 100``).

    Raises:
        KeyError: ``field_name`` is not a setting, or a required one (no default).
    """
    found = FinetuneConfig.__dataclass_fields__.get(field_name)
    if found is None:
        raise KeyError(field_name)
    if found.default is not dataclasses.MISSING:
        return found.default
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    raise KeyError(f"{field_name} has no default; it is required")


def nearest_valid_sizes(size: int, factor: int) -> tuple[int, int]:
    """Two valid patch sizes around ``size``: the multiple of ``factor`` at or below it (at least
    ``factor``) and the next one up."""
    below = max(factor, (size // factor) * factor)
    return below, below + factor


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} {value!r}: use a whole number of at least 1.")
