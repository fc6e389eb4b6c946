"""Frozen encoder stages in int8 while finetuning (backend/finetune/frozen_int8.py)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.backend.events import run_to_end as drain
from empanada_desktop.backend.finetune import frozen_int8
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import finetune
from empanada_desktop.backend.inference import int8
from empanada_desktop.core.errors import ConfigError
from tests.backend.conftest import build_tiny

pytestmark = pytest.mark.skipif(int8.unavailable_reason(torch.device("cpu")) is not None,
                                reason=str(int8.unavailable_reason(torch.device("cpu"))))


def config(model, train_dir, tmp_path, name, **changes):
    values = dict(model=model, train_dirs=[train_dir], new_name="tiny_ft", iterations=4, patch_size=64,
                  batch_size=2, device="cpu", checkpoint_every=2, precision="fp32", register=False, seed=3,
                  out_dir=tmp_path / name, frozen_int8="on")
    values.update(changes)
    return FinetuneConfig(**values)


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["losses"]["total"] for r in records if "losses" in r]


def test_units_follow_the_frozen_layers():
    model = build_tiny()
    assert frozen_int8.frozen_units(model, "none") == ["encoder"]
    assert frozen_int8.frozen_units(model, "stage3") == ["encoder.layer1", "encoder.layer2"]
    assert frozen_int8.frozen_units(model, "stage1") == []
    assert frozen_int8.frozen_units(model, "all") == []
    cpu = torch.device("cpu")
    assert frozen_int8.wanted("auto", cpu, "fp32", ["encoder"])
    assert frozen_int8.wanted("on", cpu, "bf16", ["encoder"])
    assert not frozen_int8.wanted("on", cpu, "fp32", [])
    assert not frozen_int8.wanted("on", torch.device("cuda"), "fp32", ["encoder"])
    with pytest.raises(ConfigError, match="frozen_int8"):
        FinetuneConfig(model="m", train_dirs=["d"], new_name="n", frozen_int8="maybe")


def test_next_to_bf16_only_where_int8_measured_faster(monkeypatch):
    from empanada_desktop.backend import cpu as cpu_module

    cpu = torch.device("cpu")
    for flags, expected in (({"avx2"}, False), ({"avx2", "avx512f", "avx512_bf16"}, False),
                            ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, True),
                            ({"avx2", "avx512f", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"}, True)):
        info = cpu_module.cpu_capability_info()
        monkeypatch.setattr(cpu_module, "cpu_capability_info",
                            lambda info=info, flags=flags: dataclasses.replace(info, flags=frozenset(flags)))
        assert frozen_int8.wanted("auto", cpu, "bf16", ["encoder"]) is expected, flags
        assert frozen_int8.wanted("auto", cpu, "fp32", ["encoder"])  # float32: always
        assert frozen_int8.wanted("on", cpu, "bf16", ["encoder"])


def test_swapped_in_for_training_steps_only():
    model = build_tiny()
    units = frozen_int8.frozen_units(model, "stage3")
    images = torch.randn(4, 1, 64, 64)
    built = frozen_int8.build(model, units, images)
    assert set(built.units) == set(units) and built.cosine >= frozen_int8.MIN_COSINE
    keys = set(model.state_dict())
    with torch.no_grad():
        plain = model.encoder(images)[2]
        with built.active(model):
            assert "forward" in vars(model.encoder.layer1)
            swapped = model.encoder(images)[2]
    assert "forward" not in vars(model.encoder.layer1)  # the float32 module again
    assert set(model.state_dict()) == keys  # checkpoints and export unchanged
    assert not torch.equal(plain, swapped)  # really int8 ...
    assert torch.nn.functional.cosine_similarity(plain.flatten(), swapped.flatten(), dim=0) > 0.99  # ... and close


def test_loss_curve_close_to_float32_and_resume_is_exact(tiny_model, train_dir, tmp_path):
    # At the default learning rate the tiny random model's first Adam steps are about
    # lr * sign(gradient), so rounding-level differences move whole steps: float32 alone gave
    # 6.47 or 9.64 at step 4 depending on memory format. At 3e-4 the curve is a stable quantity.
    lr = 3e-4
    events, _ = drain(finetune(config(tiny_model, train_dir, tmp_path, "int8", max_lr=lr)))
    notes = [e.text for e in events if isinstance(e, Message)]
    assert any(text.startswith("Frozen layers run in int8") for text in notes), notes
    drain(finetune(config(tiny_model, train_dir, tmp_path, "float", frozen_int8="off", max_lr=lr)))
    with_int8, reference = losses(tmp_path / "int8"), losses(tmp_path / "float")
    assert len(with_int8) == len(reference) == 4
    for a, b in zip(with_int8, reference):
        assert a == pytest.approx(b, rel=0.02)  # the tolerance stated in docs/CPU_SPEED.md
    assert with_int8 != reference  # the int8 path did run

    # Stopped after step 2 and resumed: the int8 layers are calibrated on step 1's batch again.
    seen = []
    drain(finetune(config(tiny_model, train_dir, tmp_path, "resumed", max_lr=lr), lambda: len(seen) >= 2),
          on_event=lambda e: seen.append(e) if isinstance(e, Progress) else None)
    drain(finetune(FinetuneConfig(model="x", train_dirs=["x"], new_name="x", device="cpu",
                                  resume=tmp_path / "resumed")))
    assert losses(tmp_path / "resumed") == pytest.approx(with_int8, rel=1e-5)


def test_torchscript_model_trains_with_float32_frozen_layers(train_dir, tmp_path, app_home):
    """A file whose config does not rebuild it natively (here a ResNet-18 file registered like
    MitoNet_v1, a ResNet-50 config) trains as TorchScript: the frozen layers stay float32 and
    the run says why, instead of failing (as the frozen build's smoke test found)."""
    import dataclasses

    from empanada_desktop.backend.torchscript import script_model
    from empanada_desktop.core.registry import ModelRegistry

    path = tmp_path / "ts_tiny.pth"
    script_model(build_tiny().eval()).save(str(path))
    registry = ModelRegistry()
    registry.register("ts_tiny", dataclasses.replace(registry.get("MitoNet_v1").config), path, copy=True)
    events, _ = drain(finetune(config("ts_tiny", train_dir, tmp_path, "ts", iterations=2, checkpoint_every=0)))
    notes = [e.text for e in events if isinstance(e, Message)]
    assert any(text.startswith("Frozen layers stay in float32") and "TorchScript" in text for text in notes), notes
