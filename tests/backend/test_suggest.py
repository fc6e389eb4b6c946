"""Patch suggestions: uncertainty maps of fake models whose answers we control, the job, cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.backend.suggest import SuggestConfig, SuggestResult, suggest_patches
from empanada_desktop.backend.suggest.uncertainty import TRANSFORMS, image_uncertainty, inverse, transform
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.patches import PatchBox, patch_name
from empanada_desktop.core.suggest_ranking import overlap_fraction
from empanada_desktop.backend.events import run_to_end as drain

MEAN, STD = 0.57571, 0.12765


class UnsureModel(nn.Module):
    """Foreground logit ``12 * (intensity - 0.5)``: sure on black and white, unsure on mid-gray.

    The center heatmap is the mean brightness above 0.9 in each 4 x 4 cell: one center in the
    middle of a bright disc, found the same way in every flipped or rotated view.
    """

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, render_steps: int = 2, interpolate_ins: bool = True):
        intensity = (x * STD + MEAN) * self.scale
        sem = 12.0 * (intensity - 0.5)
        ctr = F.avg_pool2d((intensity - 0.9).clamp(min=0) * 10, 4)
        offsets = torch.zeros((x.shape[0], 2) + ctr.shape[-2:])
        return {"sem_logits": sem, "ctr_hmp": ctr, "offsets": offsets}


class ShiftyModel(UnsureModel):
    """Not equivariant: the left half of whatever it is shown is foreground, and its only object
    center is near the top-left corner of the view. Flipped views disagree."""

    def forward(self, x, render_steps: int = 2, interpolate_ins: bool = True):
        sem = torch.full_like(x, -10.0)
        sem[..., : x.shape[-1] // 2] = 10.0
        ctr = torch.zeros((x.shape[0], 1, x.shape[-2] // 4, x.shape[-1] // 4))
        ctr[..., 2, 2] = 1.0
        offsets = torch.zeros((x.shape[0], 2) + ctr.shape[-2:])
        return {"sem_logits": sem, "ctr_hmp": ctr, "offsets": offsets}


class FlickeringModel(UnsureModel):
    """Unsure on mid-gray, and there its answer depends on where the pixel is in the view (a
    stripe pattern of the view's columns), so flipped or rotated views disagree on mid-gray
    only."""

    def forward(self, x, render_steps: int = 2, interpolate_ins: bool = True):
        out = super().forward(x, render_steps, interpolate_ins)
        intensity = x * STD + MEAN
        columns = torch.arange(x.shape[-1], dtype=x.dtype)
        stripes = torch.where(torch.sin(2 * torch.pi * columns / 10 + 0.3) > 0, 10.0, -10.0)
        out["sem_logits"] = out["sem_logits"] + stripes * ((intensity - 0.5).abs() < 0.1)
        return out


def model_config():
    from empanada_desktop.core.model_config import ModelConfig

    return ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="fake.pth", padding_factor=16)


def engine_for(model) -> Engine2D:
    return Engine2D(model, model_config(), InferenceConfig(device="cpu"), "cpu")


def half_unsure_image(size: int = 128) -> np.ndarray:
    """Left half mid-gray (the fake is unsure), right half a black/white checkerboard (sure)."""
    rng = np.random.default_rng(0)
    image = np.empty((size, size), np.uint8)
    image[:, : size // 2] = 128 + rng.integers(-3, 4, (size, size // 2))
    yy, xx = np.mgrid[:size, : size - size // 2]
    image[:, size // 2 :] = np.where(((yy // 8) + (xx // 8)) % 2 == 0, 10, 245)
    return image


def test_transforms_are_undone_by_their_inverse():
    tensor = torch.arange(12.0).reshape(1, 3, 4)
    for name in TRANSFORMS:
        assert torch.equal(transform(inverse(name), transform(name, tensor)), tensor), name


def test_uncertainty_is_high_where_the_model_is_unsure():
    maps = image_uncertainty(engine_for(UnsureModel()), half_unsure_image(), tta=8, boundary_px=2)
    threshold = maps.signals["threshold"]
    assert threshold.shape == (128, 128)
    assert threshold[:, :56].mean() > 0.9  # p close to 0.5
    assert threshold[:, 72:].mean() < 0.1  # p close to 0 or 1
    # an equivariant model: its flipped and rotated views agree
    assert maps.signals["tta"].max() < 0.05
    combined = maps.combined({"threshold": 1.0, "tta": 1.0, "centers": 0.5})
    assert combined[:, :56].mean() > 3 * combined[:, 72:].mean()


def test_disagreeing_views_and_unstable_centers_are_measured():
    engine = engine_for(ShiftyModel())
    image = np.full((64, 64), 128, np.uint8)
    one = image_uncertainty(engine, image, tta=1)
    assert one.signals["tta"].max() == 0.0 and one.signals["centers"].max() == 0.0
    two = image_uncertainty(engine, image, tta=2)  # identity and left-right flip
    assert two.signals["tta"].mean() > 0.9  # every pixel: fg in one view, bg in the other
    centers = two.signals["centers"]
    assert centers[10, 10] == pytest.approx(1.0)  # a center in one view of two
    assert centers[10, 53] == pytest.approx(1.0)  # the other view's center, mirrored
    assert centers[40, 32] == 0.0


def test_stable_centers_give_no_center_uncertainty():
    yy, xx = np.mgrid[:64, :64]
    image = np.where(np.hypot(yy - 30, xx - 30) < 8, 250, 20).astype(np.uint8)
    maps = image_uncertainty(engine_for(UnsureModel()), image, tta=8)
    assert maps.signals["centers"].max() == 0.0


def config_for(image, **changes):
    values = dict(model="fake", image=image, n=3, patch_size=32, device="cpu", tta=4, weights={"threshold": 1.0})
    values.update(changes)
    return SuggestConfig(**values)


def run_job(config, stop=lambda: False, model=None):
    return drain(suggest_patches(config, stop, model=model or UnsureModel(), model_config=model_config()))


def test_suggestions_come_from_where_the_model_is_unsure():
    image = half_unsure_image()
    events, result = run_job(config_for(image))
    assert isinstance(result, SuggestResult) and not result.stopped
    assert [p.rank for p in result.patches] == [1, 2, 3]
    for patch in result.patches:
        assert patch.box.col + patch.box.size <= 64 + 8  # the unsure half
        assert patch.image.shape == (32, 32) and patch.image.dtype == np.uint8
        assert np.array_equal(patch.image, image[patch.box.row : patch.box.row + 32, patch.box.col : patch.box.col + 32])
        assert patch.labels.shape == (32, 32) and patch.labels.dtype == np.int32
        assert patch.signals["threshold"] > 0.9 and patch.score > 0.3 and set(patch.signals) == {"threshold", "tta", "centers"}
        assert patch.zyx == (0, patch.box.row, patch.box.col)
    for i, a in enumerate(result.patches):
        for b in result.patches[i + 1 :]:
            assert overlap_fraction(a.box, b.box) <= 0.25
    assert result.uncertainty.shape == (128, 128) and result.uncertainty.dtype == np.float32
    assert result.uncertainty[:, :56].mean() > result.uncertainty[:, 72:].mean() + 0.3
    assert set(result.signal_maps) == {"threshold", "tta", "centers"}
    assert result.analysed == (("xy", 0),) and result.volume_shape == (1, 128, 128)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total == 1 + 3  # one window, three predictions


def test_default_weights_follow_disagreeing_views():
    image = half_unsure_image()
    maps = image_uncertainty(engine_for(FlickeringModel()), image, tta=4)
    assert maps.signals["tta"][:, :56].mean() > 0.5 and maps.signals["tta"][:, 72:].max() < 0.05
    config = SuggestConfig(model="fake", image=image, n=3, patch_size=32, device="cpu")  # default weights
    _, result = run_job(config, model=FlickeringModel())
    assert all(p.box.col + p.box.size <= 64 + 8 for p in result.patches)
    assert result.uncertainty[:, :56].mean() > 0.3 > result.uncertainty[:, 72:].max()


def test_labelled_patches_are_excluded(tmp_path):
    image = half_unsure_image()
    _, first = run_job(config_for(image, n=4))
    taken = [p.box for p in first.patches]
    _, again = run_job(config_for(image, n=4, labelled=taken[:2]))
    for patch in again.patches:
        assert all(overlap_fraction(patch.box, box) <= 0.25 for box in taken[:2])
    # the same, read from a training set folder's file names
    for box in taken:
        folder = tmp_path / "set" / "cells" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{patch_name('cells', box)}.tiff").write_bytes(b"")
    events, third = run_job(config_for(image, n=4, training_sets=[tmp_path / "set"], image_stem="cells"))
    assert any(isinstance(e, Message) and "4 labelled" in e.text for e in events)
    for patch in third.patches:
        assert all(overlap_fraction(patch.box, box) <= 0.25 for box in taken)


def test_cancel_stops_the_job():
    image = np.stack([half_unsure_image(64)] * 6)
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    events, result = run_job(config_for(image, scope="stack", max_slices=6), stop)
    assert result.stopped and result.patches == ()
    assert len([e for e in events if isinstance(e, Progress)]) < 6


def test_stacks_are_sampled_not_scored_everywhere():
    volume = np.stack([half_unsure_image(64)] * 40)
    events, result = run_job(config_for(volume, scope="planes", max_slices=5, n=4, predict=False))
    assert len(result.analysed) <= 5
    assert result.analysed[0] == ("xy", 20)  # the shown slice (the middle one) comes first
    assert {plane for plane, _ in result.analysed} >= {"xy"}
    assert all(p.labels is None for p in result.patches) and len(result.patches) == 4
    # huge slices: at most max_windows_per_slice windows each
    big = np.tile(half_unsure_image(64), (1, 6, 6))
    _, result = run_job(config_for(big, window=64, max_windows_per_slice=3, predict=False))
    assert result.candidates <= 3 * 9
    assert (result.uncertainty > 0).mean() < 0.5  # unanalysed parts of the shown slice stay 0


def test_bad_settings_are_refused():
    image = half_unsure_image(64)
    with pytest.raises(ConfigError, match="patch size"):
        run_job(config_for(image, patch_size=128))
    with pytest.raises(ConfigError, match="scope"):
        config_for(image, scope="volume")
    with pytest.raises(ConfigError, match="tta"):
        config_for(image, tta=9)
    with pytest.raises(ConfigError, match="weights"):
        config_for(image, weights={"entropy": 1.0})
    with pytest.raises(ConfigError, match="index"):
        run_job(config_for(np.stack([image] * 3), index=5))
    with pytest.raises(ConfigError, match="labelled"):
        config_for(image, labelled=[(0, 0, 32)])


def test_real_tiny_model_with_encoder_features(tiny_model):
    from empanada_desktop.core.model_config import ModelConfig

    config = ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="t.pth", padding_factor=16)
    image = np.random.default_rng(0).integers(0, 255, (2, 96, 96)).astype(np.uint8)
    events, result = drain(suggest_patches(config_for(image, scope="stack", tta=2, n=2), model=tiny_model,
                                           model_config=config))
    assert len(result.patches) == 2 and all(p.labels.shape == (32, 32) for p in result.patches)
    assert {index for _, index in result.analysed} == {0, 1}
    assert PatchBox("xy", 0, 0, 0, 32).size == result.patches[0].box.size
