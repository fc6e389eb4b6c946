"""Training a new model: settings, classes checked against masks, CEM1.5M import, CLI, resume, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from empanada_desktop.backend.finetune.train_config import (
    ARCHITECTURE_CHOICES,
    ENCODER_CHOICES,
    TrainConfig,
)
from empanada_desktop.cli import main
from empanada_desktop.core.classes import ClassSpec, mask_problem, parse_classes
from empanada_desktop.core.errors import ConfigError, DatasetError, ModelLoadError
from empanada_desktop.backend.events import run_to_end as drain

from finetune_fixtures import write_training_set


def step_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["losses"]["total"] for r in records if "losses" in r}


def test_choices_are_the_native_zoo():
    from empanada_desktop.backend.models import ARCHITECTURES, ENCODERS

    assert set(ARCHITECTURE_CHOICES) == set(ARCHITECTURES) and set(ENCODER_CHOICES) == set(ENCODERS)


def test_train_config_checks_and_round_trip(tmp_path):
    base = dict(train_dirs=[tmp_path], new_name="new")
    with pytest.raises(ConfigError, match="CEM1.5M weights are a ResNet-50"):
        TrainConfig(**base, init="cem", encoder="resnet18")
    with pytest.raises(ConfigError, match="randomly initialised encoder must train"):
        TrainConfig(**base, layers="stage4")
    with pytest.raises(ConfigError, match=r"ids must be 1..2"):
        TrainConfig(**base, classes=("1,mito,instance", "3,er,semantic"))
    with pytest.raises(ConfigError, match="kind 'thing'"):
        TrainConfig(**base, classes=("1,mito,thing",))
    with pytest.raises(ConfigError, match="new_name"):
        TrainConfig(train_dirs=[tmp_path])
    config = TrainConfig(**base, init="cem", layers="stage4", classes=("1,mito,instance", "2,er,semantic"))
    assert config.model == "new PanopticDeepLabPR/resnet50 (cem init)"
    assert config.num_classes == 3 and config.thing_list == (1,)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["classes"] == ["1,mito,instance", "2,er,semantic"]


def test_masks_are_checked_against_the_classes():
    classes = parse_classes(["1,mito,instance", "2,er,semantic"])
    assert mask_problem(np.array([[0, 1001, 1002, 2000]]), classes, 1000) is None
    assert "class 3" in mask_problem(np.array([[0, 3001]]), classes, 1000)
    assert "class 0" in mask_problem(np.array([[0, 7]]), classes, 1000)
    assert "semantic class 2" in mask_problem(np.array([[2001]]), classes, 1000)
    assert mask_problem(np.array([[0, 5, 9000]]), (ClassSpec(1, "mito"),), 1000) is None


def _write_multiclass(root, bad_value=None):
    rng = np.random.default_rng(0)
    for source in ("a", "b"):
        (root / source / "images").mkdir(parents=True)
        (root / source / "masks").mkdir(parents=True)
        for index in range(2):
            image = rng.integers(40, 80, (64, 64)).astype(np.uint8)
            mask = np.zeros((64, 64), np.int32)
            mask[5:20, 5:20], mask[30:45, 30:45], mask[50:60, :] = 1001, 1002, 2000
            if bad_value is not None and (source, index) == ("b", 1):
                mask[0, 0] = bad_value
            image[mask > 0] += 100
            tifffile.imwrite(root / source / "images" / f"p{index}.tiff", image)
            tifffile.imwrite(root / source / "masks" / f"p{index}.tiff", mask)
    return root


def test_multiclass_training_exports_n_plus_one_channels_and_names_a_bad_mask(tmp_path):
    from empanada_desktop.backend.finetune.loop import finetune
    from empanada_desktop.backend.torchscript import verify_model_file

    classes = ("1,mito,instance", "2,er,semantic")
    good = TrainConfig(train_dirs=[_write_multiclass(tmp_path / "good")], new_name="multi", encoder="resnet18",
                       classes=classes, iterations=1, patch_size=64, batch_size=2, device="cpu", precision="fp32",
                       out_dir=tmp_path / "run", register=False)
    _, result = drain(finetune(good))
    assert verify_model_file(result.exported_pth)["num_classes"] == 3
    bad = good.replace(train_dirs=(_write_multiclass(tmp_path / "bad", bad_value=3001),), out_dir=tmp_path / "run2")
    with pytest.raises(DatasetError, match=r"bad/b/masks/p1.tiff holds value 3001, which is class 3"):
        drain(finetune(bad))


def test_cli_train_exports_the_empanada_pair_and_resumes_on_the_same_curve(tmp_path):
    from empanada_desktop.backend.torchscript import load_model, verify_model_file
    from empanada_desktop.core.model_config import ModelConfig
    from empanada_desktop.core.registry import ModelRegistry

    train = write_training_set(tmp_path / "train", {"big": 6, "small": 2}, seed=3)
    common = ["train", "--architecture", "PanopticDeepLabPR", "--encoder", "resnet18", "--init", "random",
              "--train", str(train), "--iterations", "3", "--patch-size", "64", "--batch-size", "2",
              "--device", "cpu", "--precision", "fp32", "--checkpoint-every", "1"]
    assert main([*common, "--name", "NewNet", "--out", str(tmp_path / "whole")]) == 0
    pth, yml = tmp_path / "whole" / "NewNet.pth", tmp_path / "whole" / "NewNet.yaml"
    assert verify_model_file(pth)["num_classes"] == 1
    config = ModelConfig.from_yaml(yml)
    assert (config.architecture, config.encoder, config.padding_factor, config.labels) == \
        ("PanopticDeepLabPR", "resnet18", 16, (1,))
    assert config.model == str(pth.resolve()) and config.model_quantized is None
    assert 0.2 < config.norms.mean < 0.6 and "random weights" in config.description
    # unfused batch norm in the encoder, as trained
    assert "encoder.bn1.running_mean" in load_model(pth).state_dict()
    assert ModelRegistry().get("NewNet").installed

    # Stopped after step 2, resumed with `train --resume`: the same loss at step 3.
    from empanada_desktop.cli.train import run_train
    from empanada_desktop.cli import build_parser

    steps = iter(range(100))
    args = build_parser().parse_args([*common, "--name", "NewNet2", "--out", str(tmp_path / "split")])
    assert run_train(args, stop=lambda: next(steps) >= 2) == 130
    assert main(["train", "--resume", str(tmp_path / "split"), "--device", "cpu"]) == 0
    whole, split = step_losses(tmp_path / "whole"), step_losses(tmp_path / "split")
    assert sorted(split) == [1, 2, 3]
    assert split[3] == pytest.approx(whole[3], rel=1e-5)


def _fake_cem_file(path, seed=0, *, prefix="module.", encoder="resnet50"):
    """A checkpoint with the CEM1.5M layout built from our own one-channel ResNet (random weights)."""
    from empanada_desktop.backend.models.encoders import build_encoder

    torch.manual_seed(seed)
    state = {f"{prefix}{k}": v for k, v in build_encoder(encoder).state_dict().items()}
    state[f"{prefix}fc.weight"] = torch.zeros(10, 2048 if encoder == "resnet50" else 512)
    torch.save({"state_dict": state, "norms": [0.51, 0.17], "epoch": 200}, path)
    return {k[len(prefix):]: v for k, v in state.items() if ".fc." not in f".{k}"}


def test_cem_weights_are_imported_once_and_initialise_the_encoder(tmp_path, app_home, capsys):
    from empanada_desktop.backend.finetune.new_model import build_new_model, imported_cem_path
    from empanada_desktop.cli import build_parser
    from empanada_desktop.cli.train import config_from_args

    source = tmp_path / "downloads" / "cem1.5m_swav_resnet50_200ep_balanced.pth.tar"
    source.parent.mkdir()
    expected = _fake_cem_file(source)
    train = write_training_set(tmp_path / "train", {"a": 2}, seed=1)
    args = build_parser().parse_args(["train", "--init", "cem", str(source), "--train", str(train), "--name", "CemNet"])
    config = config_from_args(args)
    assert "imported the CEM1.5M weights" in capsys.readouterr().out
    assert imported_cem_path().is_file() and str(imported_cem_path()).startswith(str(app_home))
    source.unlink()  # from now on the imported copy is used
    config = config.replace(init_file=None)
    model, model_config = build_new_model(config)
    encoder = model.encoder.state_dict()
    assert all(torch.equal(encoder[key], value) for key, value in expected.items() if key != "fc.weight")
    assert (model_config.norms.mean, model_config.norms.std) == (0.51, 0.17)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())


def test_cem_file_that_is_not_a_resnet50_is_refused(tmp_path):
    from empanada_desktop.backend.finetune.new_model import build_new_model, import_cem

    wrong = tmp_path / "wrong.pth.tar"
    _fake_cem_file(wrong, encoder="resnet18", prefix="")
    with pytest.raises(ModelLoadError, match="not a one-channel ResNet-50 checkpoint"):
        import_cem(wrong)
    config = TrainConfig(train_dirs=[tmp_path], new_name="x", init="cem")
    with pytest.raises(ModelLoadError, match="no CEM1.5M weights at .*import it once"):
        build_new_model(config)
