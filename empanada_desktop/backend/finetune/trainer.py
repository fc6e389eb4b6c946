"""One model being finetuned: which layers train, device and precision, one step, validation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from empanada_desktop.backend import distributed
from empanada_desktop.backend.finetune import cpu_kernels
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.data import Batch, TrainingData
from empanada_desktop.backend.finetune.losses import PanopticLoss
from empanada_desktop.backend.finetune.precision import Precision
from empanada_desktop.backend.inference.int8 import running_model
from empanada_desktop.backend.runtime import tune_cpu_runtime

log = logging.getLogger(__name__)


def uses_channels_last(device: torch.device, precision: str = "fp32") -> bool:
    """Channels-last helps convolutions on CUDA (tensor cores), and float32 ones on the CPU
    (oneDNN's float32 kernels work in channels-last: a MitoNet_v1 step, batch 16, 256 px, layers
    none, AVX2: 6.66 s against 7.97 s contiguous; benchmarks/fp32_step_options.py). On the CPU
    in bf16 it made a step 8x slower (batch 4, 256 px: 5.9 s against 0.72 s contiguous), and MPS
    gains nothing from it."""
    return device.type == "cuda" or (device.type == "cpu" and precision == "fp32")


class Trainer:
    """Wraps the model with its finetunable layers, device, precision and loss.

    ``counts`` holds the trainable parameter count for every layer choice (measured before the
    chosen layers are set), for the run config and the user.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        model_config: object,
        config: FinetuneConfig,
        device: torch.device,
        precision: Precision,
    ) -> None:
        from empanada_desktop.backend.models.stages import set_finetunable, trainable_parameter_counts

        tune_cpu_runtime()
        self.config = config
        self.model_config = model_config
        self.device = device
        self.precision = precision
        self.counts = dict(trainable_parameter_counts(model))
        self.trainable = set_finetunable(model, config.layers)
        self.channels_last = uses_channels_last(device, precision.name)
        model = model.to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        # Under torchrun: synchronised batch norm and DistributedDataParallel (else ``model``).
        self.forward_module = distributed.wrap_model(model, device)
        self.criterion = PanopticLoss.from_params(getattr(model_config, "criterion_params", None))
        self.grad_norms: dict[str, torch.Tensor] | None = None  # per part, when clipping measured them
        self.frozen_int8 = None  # a FrozenInt8 once use_frozen_int8 prepared it
        # On the CPU some layers train through faster kernels of our own (cpu_kernels.py).
        self.cpu_kernels = cpu_kernels.for_training(model, device, precision.name)

    def use_frozen_int8(self, images: torch.Tensor) -> str | None:
        """Run the frozen encoder stages in int8 when ``config.frozen_int8`` asks for it here;
        ``images`` (normalised, N x 1 x H x W) calibrate. Returns a note for the user, or None."""
        from empanada_desktop.backend.finetune import frozen_int8
        from empanada_desktop.backend.inference.int8 import Int8Unavailable

        units = frozen_int8.frozen_units(self.model, self.config.layers)
        if not frozen_int8.wanted(self.config.frozen_int8, self.device, self.precision.name, units):
            return None
        try:
            self.frozen_int8 = frozen_int8.build(self.model, units, images.to(self.device))
        except Int8Unavailable as error:
            return f"Frozen layers stay in float32: {error}"
        return self.frozen_int8.note()

    def train_mode(self) -> None:
        """``model.train()``, then frozen BatchNorm layers back to eval (their statistics stay)."""
        from empanada_desktop.backend.models.stages import freeze_batchnorm_eval

        self.model.train()
        freeze_batchnorm_eval(self.model)

    def make_batch_fn(self, data: TrainingData) -> Callable[[int], Batch]:
        model_config = self.model_config
        norms = model_config.norms
        engine = getattr(model_config, "engine_params", None)
        pin = self.device.type == "cuda"

        def make_batch(step: int) -> Batch:
            batch = data.make_batch(
                step,
                batch_size=self.config.batch_size,
                patch_size=self.config.patch_size,
                seed=self.config.seed,
                mean=float(norms.mean),
                std=float(norms.std),
                num_classes=int(getattr(model_config, "num_classes", 1)),
                label_divisor=int(getattr(engine, "label_divisor", 1000)),
                thing_list=tuple(getattr(model_config, "thing_list", (1,))),
            )
            batch = distributed.shard_batch(batch)  # this process's slice of the global batch
            if pin:
                batch.images = batch.images.pin_memory()
            return batch

        return make_batch

    def forward_loss(self, images: torch.Tensor, targets: dict[str, torch.Tensor]):
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = {k: v.to(self.device, non_blocking=True) for k, v in targets.items()}
        frozen = self.frozen_int8.active(self.model) if self.frozen_int8 is not None else contextlib.nullcontext()
        kernels = self.cpu_kernels.active(self.model) if self.cpu_kernels is not None else contextlib.nullcontext()
        with frozen, kernels, self.precision.autocast(), running_model():
            output = self.forward_module(images)
        # The loss itself runs in float32 (losses.py casts), outside autocast.
        return self.criterion(output, targets)

    def train_step(self, batch: Batch, optimizer: torch.optim.Optimizer, scaler) -> dict[str, float]:
        """One optimiser step; returns the loss parts as floats (one device sync)."""
        self.train_mode()
        total, parts = self.forward_loss(batch.images, batch.targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        # Unscaled gradients for clipping and for the health monitor, which reads them after the step.
        scaler.unscale_(optimizer)
        self.grad_norms = None
        if self.config.grad_clip:
            from empanada_desktop.backend.finetune.health import clip_gradients

            # Clipping measures the norm of each part anyway; the monitor reuses it (one pass).
            self.grad_norms = clip_gradients(optimizer, float(self.config.grad_clip))
        scaler.step(optimizer)
        scaler.update()
        values = distributed.average(torch.stack(list(parts.values())).detach().float()).cpu().tolist()
        return dict(zip(parts.keys(), values))

    def validate(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
        from empanada_desktop.backend.inference.evaluate import evaluate

        self.model.eval()
        try:
            with torch.no_grad():
                metrics = evaluate(self.model, self.model_config, list(pairs), self.device)
        finally:
            self.train_mode()
        return {k: float(v) for k, v in dict(metrics).items() if isinstance(v, (int, float))}

    def export_model(self) -> torch.nn.Module:
        """The model on the CPU, float32, contiguous, eval mode (what export_empanada scripts)."""
        model = distributed.plain_batchnorm(self.model).to("cpu").to(memory_format=torch.contiguous_format)
        for parameter in model.parameters():
            parameter.grad = None  # not exported; copying them also makes torch warn
            parameter.requires_grad_(True)
        return model.eval()
