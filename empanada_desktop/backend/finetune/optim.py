"""AdamW + OneCycleLR as empanada finetunes (docs/EMPANADA_FORMATS.md section 4).

Weight decay applies to the weights of convolutions and linear layers only: biases and the
weights of normalisation layers (all 1-D parameters, also in TorchScript models where module
types are opaque) get none.
"""

from __future__ import annotations

import torch


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable parameters: with and without weight decay."""
    decay, no_decay = [], []
    for _, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: torch.nn.Module, max_lr: float, weight_decay: float) -> torch.optim.AdamW:
    groups = parameter_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=max_lr)


def make_scheduler(
    optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int, pct_start: float
) -> torch.optim.lr_scheduler.OneCycleLR:
    """One cycle over exactly ``total_steps`` optimiser steps (iterations, never epochs)."""
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=max(1, int(total_steps)), pct_start=pct_start
    )
