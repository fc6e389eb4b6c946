"""The training health monitor (backend/finetune/health.py): safe defaults for batch-norm-fused
encoders, blow-up detection, roll-back, and the 'predicts no objects' validation warning."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from empanada_desktop.backend.events import Health, Message, Progress
from empanada_desktop.backend.finetune import health
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import finetune
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.backend.events import run_to_end as drain

from finetune_fixtures import write_training_set


@pytest.fixture
def fused_model(app_home, tmp_path) -> str:
    """A MitoNet_v1-format file (encoder batch norms fused, as released) with random weights,
    made like the other tests' empanada-style files and registered with a resnet18 config."""
    import dataclasses

    from tests.backend.conftest import make_empanada_style_file
    from empanada_desktop.core.registry import ModelRegistry

    path = tmp_path / "Fused_v1.pth"
    make_empanada_style_file(path, seed=0)
    registry = ModelRegistry()
    config = dataclasses.replace(registry.get("MitoNet_v1").config, architecture="PanopticDeepLabPR",
                                 encoder="resnet18")
    registry.register("fused_v1", config, path, copy=True)
    return "fused_v1"


def health_records(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "health" in r]


# -- config and defaults ------------------------------------------------------------------------


def test_config_checks_health_fields(tmp_path):
    base = dict(model="M", train_dirs=[tmp_path], new_name="x")
    with pytest.raises(ConfigError, match="encoder_lr_scale"):
        FinetuneConfig(**base, encoder_lr_scale=0)
    with pytest.raises(ConfigError, match="grad_clip"):
        FinetuneConfig(**base, grad_clip=-1)
    with pytest.raises(ConfigError, match="health_every"):
        FinetuneConfig(**base, health_every=0)
    with pytest.raises(ConfigError, match="health_check"):
        FinetuneConfig(**base, health_check="yes")
    config = FinetuneConfig(**base, encoder_lr_scale=0.1, grad_clip=1.0)
    assert FinetuneConfig.from_dict(config.to_dict()) == config


def test_safe_defaults_apply_to_fused_encoders_only(tiny_native_model, tmp_path):
    from empanada_desktop.backend.models import fuse_encoder_batchnorm

    config = FinetuneConfig(model="M", train_dirs=[tmp_path], new_name="x", layers="all")
    normal, note = health.resolve_safe_defaults(config, tiny_native_model)
    assert (normal.encoder_lr_scale, normal.grad_clip, note) == (1.0, 0.0, None)
    fused, note = health.resolve_safe_defaults(config, fuse_encoder_batchnorm(tiny_native_model))
    assert fused.encoder_lr_scale == health.SAFE_ENCODER_LR_SCALE and fused.grad_clip == health.SAFE_GRAD_CLIP
    assert "no batch norms" in note
    frozen, note = health.resolve_safe_defaults(config.replace(layers="none"), tiny_native_model)
    assert (frozen.encoder_lr_scale, frozen.grad_clip, note) == (1.0, 0.0, None)
    chosen, _ = health.resolve_safe_defaults(config.replace(encoder_lr_scale=0.5, grad_clip=0.0), tiny_native_model)
    assert (chosen.encoder_lr_scale, chosen.grad_clip) == (0.5, 0.0)


def test_encoder_groups_peak_at_their_own_learning_rate(tiny_native_model):
    from empanada_desktop.backend.finetune.optim import make_optimizer, make_scheduler

    optimizer = make_optimizer(tiny_native_model, 0.003, 0.1, encoder_lr_scale=0.1)
    assert [g["name"] for g in optimizer.param_groups] == ["heads", "heads", "encoder", "encoder"]
    scheduler = make_scheduler(optimizer, 0.003, 10, 0.3)
    peaks = {}
    for _ in range(10):
        for group in optimizer.param_groups:
            peaks[group["name"]] = max(peaks.get(group["name"], 0), group["lr"])
        optimizer.step()
        scheduler.step()
    assert peaks["heads"] == pytest.approx(0.003, rel=0.05)
    assert peaks["encoder"] == pytest.approx(0.0003, rel=0.05)


# -- verdicts -----------------------------------------------------------------------------------


class _FakeMonitor(health.HealthMonitor):
    def __init__(self, start):
        self.state = {"start_scales": dict(start), "status": "ok"}
        self.recent = {}


@pytest.mark.parametrize(
    ("losses", "record", "status", "words"),
    [
        ({"total": 1.0}, {"grad_norm": {"heads": 1.0}, "encoder_scale": {"stage4": 9.0}}, "ok", ""),
        ({"total": math.nan}, {"grad_norm": {"heads": 1.0}}, "blow-up", "loss became nan"),
        ({"total": 1.0}, {"grad_norm": {"encoder": math.inf}}, "blow-up", "gradients of the encoder"),
        ({"total": 1.0}, {"grad_norm": {}, "encoder_scale": {"stage4": 95.0}}, "drifting", "grew 10.6x"),
        ({"total": 1.0}, {"grad_norm": {}, "encoder_scale": {"stage4": 1e4}}, "blow-up", "stage4 output grew"),
        ({"total": 1.0}, {"grad_norm": {}, "encoder_scale": {"stage4": 0.05}}, "blow-up", "shrank"),
    ],
)
def test_verdicts_name_what_went_wrong(losses, record, status, words):
    verdict = _FakeMonitor({"stage4": 9.0})._judge(losses, record)
    assert verdict.status == status and words in verdict.text


def test_sustained_gradient_growth_is_drift_and_a_single_spike_is_not():
    monitor = _FakeMonitor({})
    monitor.recent = {"encoder": [1.0, 2.0, 1.5, 1.0, 2e4]}
    assert monitor._judge({"total": 1.0}, {"grad_norm": {"encoder": 1.0}}).status == "ok"
    verdict = monitor._judge({"total": 1.0}, {"grad_norm": {"encoder": 3e4}})
    assert verdict.status == "drifting" and "gradient norm of the encoder grew" in verdict.text
    monitor.recent = {"encoder": [1.0, 2e4]}  # too little history to judge
    assert monitor._judge({"total": 1.0}, {"grad_norm": {"encoder": 3e4}}).status == "ok"


def test_validation_warns_when_no_object_is_predicted():
    assert health.validation_warning({"iou": 0.0, "pq": 0.0, "tp": 0, "fp": 0, "fn": 5}, 10).startswith(
        "At step 10 the model predicts no objects at all")
    assert "before training" in health.validation_warning({"tp": 0, "fp": 0}, 0, baseline=True)
    assert health.validation_warning({"iou": 0.01, "pq": 0.0, "tp": 0, "fp": 3, "fn": 5}, 10) is None


# -- the loop -----------------------------------------------------------------------------------


def test_health_is_recorded_every_step_and_scales_sampled(tiny_model, tmp_path):
    train = write_training_set(tmp_path / "train", {"a": 2}, seed=1)
    config = FinetuneConfig(model=tiny_model, train_dirs=[train], new_name="h", iterations=4, patch_size=64,
                            batch_size=2, device="cpu", checkpoint_every=0, layers="stage4", health_every=2,
                            out_dir=tmp_path / "run", register=False)
    events, result = drain(finetune(config))
    checks = [e for e in events if isinstance(e, Health)]
    assert [e.step for e in checks] == [1, 2, 3, 4]
    assert all(e.status == "ok" for e in checks), [(e.status, e.text) for e in checks]
    assert set(checks[0].grad_norms) == {"heads", "encoder"}
    assert [bool(e.encoder_scales) for e in checks] == [True, True, False, True]
    assert set(checks[0].encoder_scales) == set(health.STAGE_NAMES)
    records = health_records(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2, 3, 4] and records[0]["health"]["seconds"] >= 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["finetune"]
    # tiny_model's encoder has batch norms: empanada's recipe, written down.
    assert (saved["encoder_lr_scale"], saved["grad_clip"], saved["health_check"]) == (1.0, 0.0, True)
    assert not result.stopped and result.health_problem is None


def _scale_growth(events) -> float:
    checks = [e for e in events if isinstance(e, Health) and e.encoder_scales]
    start = checks[0].start_scales
    return max(max(value / start[stage], start[stage] / value) for e in checks for stage, value in e.encoder_scales.items())


@pytest.mark.slow
def test_all_layers_on_a_fused_encoder_safe_by_default_and_old_recipe_rolled_back(fused_model, tmp_path):
    """The issue's target: 20 steps of --layers all on a MitoNet_v1-format (fused) file."""
    train = write_training_set(tmp_path / "train", {"a": 4}, seed=1)
    common = dict(model=fused_model, train_dirs=[train], iterations=20, patch_size=64, batch_size=4,
                  device="cpu", precision="fp32", layers="all", checkpoint_every=0, register=False)

    events, result = drain(finetune(FinetuneConfig(**common, new_name="safe", out_dir=tmp_path / "safe")))
    assert not result.stopped and result.exported_pth.is_file()
    assert _scale_growth(events) < 10
    assert any(isinstance(e, Message) and "no batch norms" in e.text for e in events)
    saved = yaml.safe_load((tmp_path / "safe" / "config.yaml").read_text())["finetune"]
    assert (saved["encoder_lr_scale"], saved["grad_clip"]) == (health.SAFE_ENCODER_LR_SCALE, health.SAFE_GRAD_CLIP)

    old = FinetuneConfig(**common, new_name="old", out_dir=tmp_path / "old", encoder_lr_scale=1.0, grad_clip=0.0)
    events, result = drain(finetune(old))
    assert result.stopped and result.health_problem and result.exported_pth is None
    assert "Rolled back to the model as it was before training" in result.health_problem
    assert [e for e in events if isinstance(e, Health)][-1].status == "blow-up"
    assert [e.step for e in events if isinstance(e, Progress)][-1] < 20
    warnings = [e.text for e in events if isinstance(e, Message) and e.level == "warning"]
    assert any(text.startswith("Training stopped at step") and "Try:" in text for text in warnings)
    assert not (tmp_path / "old" / "old.pth").exists()
    assert not (tmp_path / "old" / "checkpoints" / "last.pt").exists()
    records = [json.loads(line) for line in (tmp_path / "old" / "metrics.jsonl").read_text().splitlines()]
    assert any("health_stop" in r for r in records)


def test_cli_prints_the_health_stop_as_a_warning_and_exits_3(tiny_model, tmp_path, monkeypatch, capsys):
    from empanada_desktop.cli import main

    # Any change of scale counts as a blow-up here, so that two tiny steps show the whole path.
    monkeypatch.setattr(health, "BLOW_UP_FACTOR", 1.0)
    train = write_training_set(tmp_path / "train", {"a": 2}, seed=1)
    code = main(["finetune", "--model", tiny_model, "--train", str(train), "--name", "cli_h", "--iterations", "3",
                 "--patch-size", "64", "--batch-size", "2", "--device", "cpu", "--layers", "stage4",
                 "--out", str(tmp_path / "run"), "--encoder-lr-scale", "0.5", "--grad-clip", "2"])
    err = capsys.readouterr().err
    assert code == 3
    lines = [line for line in err.splitlines() if line.startswith("warning: Training stopped at step 1 of 3")]
    assert len(lines) == 1 and "Try:" in lines[0]
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["finetune"]
    assert (saved["encoder_lr_scale"], saved["grad_clip"]) == (0.5, 2.0)
    assert not (tmp_path / "run" / "cli_h.pth").exists()


def test_cli_help_states_the_safe_defaults():
    import argparse

    from empanada_desktop.cli.finetune import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    text = " ".join(parser._subparsers._group_actions[0].choices["finetune"].format_help().split())
    assert f"default: {health.SAFE_ENCODER_LR_SCALE:g} for encoders without batch norms" in text
    assert f"default: {health.SAFE_GRAD_CLIP:g} for encoders without batch norms" in text


def test_optimizer_state_of_a_run_saved_before_the_heads_encoder_split_still_loads(tiny_native_model):
    from empanada_desktop.backend.finetune.optim import load_optimizer_state, make_optimizer

    model = tiny_native_model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    old = torch.optim.AdamW([{"params": [p for p in trainable if p.ndim > 1], "weight_decay": 0.1},
                             {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0}], lr=0.003)
    for p in trainable:
        p.grad = torch.randn_like(p)
    old.step()
    saved = old.state_dict()
    new = make_optimizer(model, 0.003, 0.1, encoder_lr_scale=1.0)
    load_optimizer_state(new, saved, model)
    for p in trainable:
        assert torch.equal(new.state[p]["exp_avg"], old.state[p]["exp_avg"])
    assert len(new.param_groups) == 4


def test_clipping_matches_torch_and_reports_each_part_before_clipping(tiny_native_model):
    from empanada_desktop.backend.finetune.optim import make_optimizer

    optimizer = make_optimizer(tiny_native_model, 0.003, 0.1, encoder_lr_scale=0.1)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for p in parameters:
        p.grad = torch.randn_like(p)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in parameters]
    for copy, p in zip(copies, parameters):
        copy.grad = p.grad.clone()
    total = torch.nn.utils.clip_grad_norm_(copies, 1.0)
    before = health.gradient_norms(optimizer)
    norms = health.clip_gradients(optimizer, 1.0)
    assert health.gradient_norms(optimizer, norms) == pytest.approx(before)
    assert math.hypot(*before.values()) == pytest.approx(float(total), rel=1e-5)
    assert math.hypot(*health.gradient_norms(optimizer).values()) == pytest.approx(1.0, rel=1e-4)
    assert all(torch.allclose(copy.grad, p.grad, rtol=1e-4, atol=1e-7) for copy, p in zip(copies, parameters))
