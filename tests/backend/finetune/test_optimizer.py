"""The finetuning optimizer: torch's fused AdamW, the same update as the plain one."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend.finetune.optim import load_optimizer_state, make_optimizer
from tests.backend.conftest import build_tiny


def _one_step(model, optimizer) -> None:
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()


def test_fused_adamw_steps_like_the_plain_one():
    fused_model, plain_model = build_tiny(seed=1), build_tiny(seed=1)
    fused = make_optimizer(fused_model, 0.003, 0.1, encoder_lr_scale=0.1)
    assert all(group["fused"] for group in fused.param_groups)
    plain = make_optimizer(plain_model, 0.003, 0.1, encoder_lr_scale=0.1)
    for group in plain.param_groups:
        group["fused"] = None  # torch's default for-loop update
    for _ in range(3):
        _one_step(fused_model, fused)
        _one_step(plain_model, plain)
    for a, b in zip(fused_model.parameters(), plain_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(fused_model.parameters(), build_tiny(seed=1).parameters()))


def test_checkpoint_from_before_fused_keeps_the_fused_update():
    model = build_tiny(seed=1)
    old = make_optimizer(model, 0.003, 0.1)
    for group in old.param_groups:
        group["fused"] = None
    _one_step(model, old)
    new = make_optimizer(model, 0.003, 0.1)
    load_optimizer_state(new, old.state_dict(), model)
    assert all(group["fused"] for group in new.param_groups)
    assert new.state_dict()["state"][0]["step"] == pytest.approx(1)
    _one_step(model, new)  # and it steps
