"""Memory format of the model while training: channels-last where it measured faster."""

from __future__ import annotations

import json

import pytest
import torch

from empanada_desktop.backend.events import run_to_end as drain
from empanada_desktop.backend.finetune import trainer as trainer_module
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import finetune


def test_choice_per_device_and_precision():
    assert trainer_module.uses_channels_last(torch.device("cpu"), "fp32")
    assert not trainer_module.uses_channels_last(torch.device("cpu"), "bf16")  # 8x slower measured
    assert trainer_module.uses_channels_last(torch.device("cuda"), "bf16")
    assert not trainer_module.uses_channels_last(torch.device("mps"), "fp32")


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["losses"]["total"] for r in records if "losses" in r]


def test_channels_last_training_matches_contiguous(tiny_model, train_dir, tmp_path, monkeypatch):
    """The same run in both memory formats: the same losses up to float32 rounding. Dropout is
    off here: its random mask is drawn in memory order, so the two formats drop different
    elements (equally likely masks, but not the same ones)."""
    real_dropout_init = torch.nn.Dropout.__init__

    def no_dropout(self, *args, **kwargs):
        real_dropout_init(self, *args, **kwargs)
        self.p = 0.0

    monkeypatch.setattr(torch.nn.Dropout, "__init__", no_dropout)
    seen = []
    real_init = trainer_module.Trainer.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        weight = next(p for p in self.model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
        seen.append(weight.is_contiguous(memory_format=torch.channels_last))

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)

    def run(name):
        drain(finetune(FinetuneConfig(model=tiny_model, train_dirs=[train_dir], new_name="tiny_cl", iterations=3,
                                      patch_size=64, batch_size=2, device="cpu", checkpoint_every=0,
                                      precision="fp32", register=False, seed=5, out_dir=tmp_path / name,
                                      frozen_int8="off", validations=0)))
        return losses(tmp_path / name)

    channels_last = run("channels_last")
    monkeypatch.setattr(trainer_module, "uses_channels_last", lambda device, precision="fp32": False)
    contiguous = run("contiguous")
    assert seen == [True, False]  # the app's default for float32 on the CPU, then the override
    assert len(channels_last) == len(contiguous) == 3
    for a, b in zip(channels_last, contiguous):
        assert a == pytest.approx(b, rel=1e-3)  # float32 rounding only
