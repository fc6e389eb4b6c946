"""The finetuning loop on a tiny registered model (resnet18 PanopticDeepLab) and 64 px data."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from empanada_desktop.backend.events import CheckpointSaved, Message, Progress, Validated
from empanada_desktop.backend.finetune.checkpoints import load_checkpoint
from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.backend.finetune.loop import estimate_seconds_per_step, finetune, trainable_counts
from empanada_desktop.core.errors import ConfigError, DatasetError
from empanada_desktop.backend.events import run_to_end as drain

from finetune_fixtures import write_training_set


def small_config(model, train_dir, **changes):
    values = dict(model=model, train_dirs=[train_dir], new_name="tiny_ft", iterations=3, patch_size=64,
                  batch_size=2, device="cpu", checkpoint_every=2)
    values.update(changes)
    return FinetuneConfig(**values)


def step_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["losses"]["total"] for r in records if "losses" in r}


def test_finetune_trains_chosen_layers_exports_and_registers(tiny_model, train_dir, tmp_path):
    from empanada_desktop.backend.torchscript import load_model
    from empanada_desktop.core.model_config import ModelConfig
    from empanada_desktop.core.registry import ModelRegistry

    base = {k: v.clone() for k, v in load_model(ModelRegistry().get(tiny_model).weights_path).state_dict().items()}
    config = small_config(tiny_model, train_dir, layers="stage4", out_dir=tmp_path / "run")
    events, result = drain(finetune(config))

    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(p.losses["total"])) for p in progress)
    assert {"ce", "mse", "l1", "pointrend_ce", "total"} <= set(progress[0].losses)
    assert progress[-1].eta_seconds == 0 and progress[0].seconds_per_step > 0
    assert any(isinstance(e, Message) and "Trainable parameters" in e.text for e in events)
    saved = [(e.step, e.kind) for e in events if isinstance(e, CheckpointSaved)]
    assert saved == [(2, "last"), (3, "last")]

    run_dir = tmp_path / "run"
    assert result.run_dir == run_dir and not result.stopped and result.steps_done == 3
    run_config = yaml.safe_load((run_dir / "config.yaml").read_text())
    counts = run_config["run"]["trainable_parameters"]
    assert counts["none"] < counts["stage4"] < counts["all"]
    assert run_config["finetune"]["layers"] == "stage4"
    assert sorted(step_losses(run_dir)) == [1, 2, 3]
    assert (run_dir / "finetune.log").read_text().count("step ") >= 3
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["step"] == 3 and checkpoint["config"]["new_name"] == "tiny_ft"

    assert result.exported_pth == run_dir / "tiny_ft.pth" and result.exported_yaml.is_file()
    assert ModelConfig.from_yaml(result.exported_yaml).model == str(result.exported_pth.resolve())
    registered = ModelRegistry().get("tiny_ft")
    assert registered.installed
    tuned = load_model(registered.weights_path).state_dict()
    assert torch.equal(tuned["encoder.layer1.0.conv1.weight"], base["encoder.layer1.0.conv1.weight"])
    assert not torch.equal(tuned["encoder.layer4.0.conv1.weight"], base["encoder.layer4.0.conv1.weight"])
    # Frozen BatchNorm layers stayed in eval mode: their running statistics did not move.
    assert torch.equal(tuned["encoder.bn1.running_mean"], base["encoder.bn1.running_mean"])
    assert not torch.equal(tuned["encoder.layer4.0.bn1.running_mean"], base["encoder.layer4.0.bn1.running_mean"])


def test_resumed_run_follows_the_uninterrupted_loss_curve(tiny_model, train_dir, tmp_path):
    full = small_config(tiny_model, train_dir, iterations=4, seed=7, register=False, out_dir=tmp_path / "full")
    drain(finetune(full))

    interrupted = full.replace(out_dir=tmp_path / "interrupted")
    steps_seen = []

    def stop_after_two():
        return len(steps_seen) >= 2

    generator = finetune(interrupted, stop_after_two)
    events = []
    while True:
        try:
            event = next(generator)
        except StopIteration as finished:
            stopped = finished.value
            break
        events.append(event)
        if isinstance(event, Progress):
            steps_seen.append(event.step)
    assert stopped.stopped and stopped.steps_done == 2 and stopped.exported_pth is None
    assert ("stop", 2) in [(e.kind, e.step) for e in events if isinstance(e, CheckpointSaved)]

    resume = FinetuneConfig(model="ignored", train_dirs=["ignored"], new_name="ignored", device="cpu",
                            resume=tmp_path / "interrupted")
    events, result = drain(finetune(resume))
    assert [e.step for e in events if isinstance(e, Progress)] == [3, 4]
    assert result.steps_done == 4 and result.exported_pth.is_file()
    expected, resumed = step_losses(tmp_path / "full"), step_losses(tmp_path / "interrupted")
    assert sorted(resumed) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert resumed[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
    # A different seed gives a different curve, so the comparison above can fail.
    other = full.replace(seed=8, out_dir=tmp_path / "other", iterations=2)
    drain(finetune(other))
    assert step_losses(tmp_path / "other")[1] != pytest.approx(expected[1], rel=1e-5)


def test_user_errors_name_the_problem_and_the_remedy(tiny_model, train_dir, tmp_path):
    with pytest.raises(DatasetError, match=r"fewer than the batch size 8.*duplicate patches.*add more"):
        drain(finetune(small_config(tiny_model, train_dir, batch_size=8)))
    with pytest.raises(ConfigError, match=r"patch size 72 .*divisible by 16.*64 or 80"):
        drain(finetune(small_config(tiny_model, train_dir, patch_size=72)))
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        drain(finetune(small_config(tiny_model, missing)))
    with pytest.raises(DatasetError):
        drain(finetune(small_config(tiny_model, write_training_set(tmp_path / "empty", {}))))
    with pytest.raises(ConfigError, match="already registered"):
        drain(finetune(small_config(tiny_model, train_dir, new_name=tiny_model)))
    # The remedy works: duplicate patches let 4 images fill a batch of 6.
    _, result = drain(finetune(small_config(tiny_model, train_dir, batch_size=6, iterations=1,
                                            duplicate_patches=True, register=False)))
    assert result.steps_done == 1


def test_validation_baseline_best_and_final(tiny_model, train_dir, val_dir, tmp_path):
    pytest.importorskip("empanada_desktop.backend.inference.evaluate")
    config = small_config(tiny_model, train_dir, val_dir=val_dir, iterations=2, validations=2, register=False,
                          out_dir=tmp_path / "run")
    events, result = drain(finetune(config))
    validated = [e for e in events if isinstance(e, Validated)]
    assert [(v.step, v.baseline) for v in validated] == [(0, True), (1, False), (2, False)]
    assert {"iou", "pq", "f1"} <= set(result.baseline_metrics) and {"iou", "pq", "f1"} <= set(result.final_metrics)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert result.best_step in (1, 2)


def test_trainable_counts_and_step_estimate(tiny_model, train_dir):
    counts = trainable_counts(tiny_model)
    assert counts["none"] < counts["stage4"] < counts["stage3"] < counts["stage2"] < counts["stage1"] <= counts["all"]
    seconds = estimate_seconds_per_step(small_config(tiny_model, train_dir), steps=1)
    assert seconds > 0


def test_stage4_trains_more_than_none_on_an_empanada_format_torchscript_model(app_home, tmp_path):
    """empanada's own finetuning trains the same parameters for none and stage4 on ResNet models
    (it looks for 'encoder.stageN'); ours maps stage4 to encoder.layer4 of a fused encoder."""
    from empanada_desktop.backend.models import build_model
    from empanada_desktop.core.registry import ModelRegistry

    model = build_model("PanopticDeepLabPR", encoder="resnet18", fused_encoder=True)
    assert any(name.startswith("encoder.layer4.0.conv1.0.") for name, _ in model.named_parameters())
    path = tmp_path / "fused.pth"
    torch.jit.script(model).save(str(path))
    registry = ModelRegistry()
    config = registry.get("MitoNet_v1").config
    registry.register("fused_tiny", config, path, copy=True)
    counts = trainable_counts("fused_tiny")
    assert counts["stage4"] > counts["none"]
    layer4 = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.layer4."))
    assert counts["stage4"] - counts["none"] == layer4


def test_registered_torchscript_model_trains_as_the_equivalent_native_module(tiny_model):
    import dataclasses

    from empanada_desktop.backend.loading import to_native
    from empanada_desktop.backend.loading import load_registered

    scripted, model_config = load_registered(tiny_model)
    native = to_native(scripted, model_config)
    assert native is not None and not isinstance(native, torch.jit.ScriptModule)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        expected, got = scripted.eval()(x), native.eval()(x)
    assert torch.allclose(expected["sem_logits"], got["sem_logits"], atol=1e-5)
    # Weights that do not fit the named architecture: keep training the TorchScript module.
    assert to_native(scripted, dataclasses.replace(model_config, encoder="resnet50")) is None
