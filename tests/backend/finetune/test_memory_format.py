"""Memory format of the model while training: channels-last where it measured faster."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend.finetune import trainer as trainer_module
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import synthetic_batch
from empanada_desktop.backend.finetune.optim import make_optimizer
from empanada_desktop.backend.finetune.precision import choose_precision
from tests.backend.conftest import build_tiny


def test_choice_per_device_and_precision():
    assert trainer_module.uses_channels_last(torch.device("cpu"), "fp32")
    assert not trainer_module.uses_channels_last(torch.device("cpu"), "bf16")  # 8x slower measured
    assert trainer_module.uses_channels_last(torch.device("cuda"), "bf16")
    assert not trainer_module.uses_channels_last(torch.device("mps"), "fp32")


def steps(monkeypatch, channels_last: bool) -> tuple[bool, list[float]]:
    """Three float32 training steps of the tiny model on one batch; (model in channels-last?, losses)."""
    monkeypatch.setattr(trainer_module, "uses_channels_last", lambda device, precision="fp32": channels_last)
    model = build_tiny(seed=1)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            # Dropout masks are drawn in memory order: the two formats would drop other elements.
            module.p = 0.0
    config = FinetuneConfig(model="tiny", train_dirs=["unused"], new_name="tiny_cl", layers="all", batch_size=2,
                            patch_size=64, device="cpu", precision="fp32", frozen_int8="off")
    device = torch.device("cpu")
    trainer = trainer_module.Trainer(model, None, config, device, choose_precision(device, "fp32"))
    weight = next(p for p in trainer.model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
    optimizer = make_optimizer(trainer.model, config.max_lr, config.weight_decay, config.encoder_lr_scale)
    scaler = trainer.precision.scaler()
    batch = synthetic_batch(2, 64, seed=0)
    losses = []
    for index in range(3):
        torch.manual_seed(index)  # PointRend's point sampling
        losses.append(trainer.train_step(batch, optimizer, scaler)["total"])
    return weight.is_contiguous(memory_format=torch.channels_last), losses


def test_channels_last_training_matches_contiguous(monkeypatch):
    """The app's float32 CPU default (channels-last) trains like contiguous memory."""
    assert trainer_module.uses_channels_last(torch.device("cpu"), choose_precision(torch.device("cpu"), "fp32").name)
    is_channels_last, channels_last = steps(monkeypatch, True)
    is_contiguous_cl, contiguous = steps(monkeypatch, False)
    assert is_channels_last and not is_contiguous_cl
    for a, b in zip(channels_last, contiguous):
        # Adam's first updates are about lr * sign(gradient), so gradients at rounding level move
        # whole steps: 0.3% apart at step 2 here (the first loss agrees to 7 digits).
        assert a == pytest.approx(b, rel=0.01)
    assert channels_last[0] == pytest.approx(contiguous[0], rel=1e-5)
    assert channels_last[0] != channels_last[-1]  # it did train
