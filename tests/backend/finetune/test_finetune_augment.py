"""Augmentation geometry, mask integrity, determinism; optimiser groups; config checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from empanada_desktop.backend.finetune.augment import (
    NO_AUGMENTATION,
    AugmentParams,
    PatchTransform,
    apply_transform,
    augment_batch,
    augment_pair,
    pad_to_multiple,
)
from empanada_desktop.backend.finetune.config import FinetuneConfig, nearest_valid_sizes
from empanada_desktop.backend.finetune.optim import make_optimizer, make_scheduler, parameter_groups
from empanada_desktop.core.errors import ConfigError

IDENTITY = PatchTransform(scale=1.0, crop_y=0, crop_x=0, angle_deg=0.0, hflip=False, vflip=False, alpha=1.0, beta=0.0)


def _pair(h=32, w=32, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask = np.zeros((h, w), np.int32)
    mask[3:10, 4:12] = 5
    mask[15:30, 18:25] = 9
    return image, mask


def _apply(image, mask, patch, t):
    return apply_transform(torch.from_numpy(image), torch.from_numpy(mask).long(), patch, t)


def test_identity_transform_returns_the_input():
    image, mask = _pair()
    out_image, out_mask = _apply(image, mask, 32, IDENTITY)
    np.testing.assert_allclose(out_image[0].numpy(), image / 255.0, atol=1e-6)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_flips_rotation_crop_and_pad_are_exact():
    image, mask = _pair()
    out = _apply(image, mask, 32, dataclasses.replace(IDENTITY, hflip=True, vflip=True))
    np.testing.assert_array_equal(out[1].numpy(), mask[::-1, ::-1])
    out = _apply(image, mask, 32, dataclasses.replace(IDENTITY, angle_deg=90.0))
    rotated = out[1].numpy()
    assert any(np.array_equal(rotated, np.rot90(mask, k)) for k in (1, -1))
    out = _apply(image, mask, 16, dataclasses.replace(IDENTITY, crop_y=5, crop_x=7))
    np.testing.assert_array_equal(out[1].numpy(), mask[5:21, 7:23])
    np.testing.assert_allclose(out[0][0].numpy(), image[5:21, 7:23] / 255.0, atol=1e-6)
    out = _apply(image, mask, 48, IDENTITY)  # pad 8 on each side, zeros
    np.testing.assert_array_equal(out[1].numpy()[8:40, 8:40], mask)
    assert float(out[0][0, :8].abs().sum()) == 0.0 and int(out[1][:8].abs().sum()) == 0


def test_scale_two_is_nearest_upsampling_for_the_mask():
    image, mask = _pair(16, 16)
    out = _apply(image, mask, 32, dataclasses.replace(IDENTITY, scale=2.0))
    np.testing.assert_array_equal(out[1].numpy(), np.kron(mask, np.ones((2, 2), np.int32)))


def test_brightness_contrast_and_clipping():
    image, mask = _pair()
    out = _apply(image, mask, 32, dataclasses.replace(IDENTITY, alpha=1.3, beta=0.2))
    np.testing.assert_allclose(out[0][0].numpy(), np.clip(image / 255.0 * 1.3 + 0.2, 0, 1), atol=1e-6)


def test_random_augmentation_keeps_labels_and_is_deterministic():
    image, mask = _pair(40, 56)
    mask[0, 0] = 2**25  # a label too large for float32 is renumbered, not corrupted
    images, masks = augment_batch([image] * 6, [mask] * 6, 24, np.random.default_rng(1))
    assert images.shape == (6, 1, 24, 24) and masks.shape == (6, 24, 24)
    assert images.dtype == torch.float32 and masks.dtype == torch.int64
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    again = augment_batch([image] * 6, [mask] * 6, 24, np.random.default_rng(1))
    assert torch.equal(images, again[0]) and torch.equal(masks, again[1])
    different = augment_batch([image] * 6, [mask] * 6, 24, np.random.default_rng(2))
    assert not torch.equal(images, different[0])
    # Without renumbering, labels stay a subset of the input labels.
    small = mask.copy()
    small[0, 0] = 0
    _, out_mask = augment_pair(image, small, 24, np.random.default_rng(5), AugmentParams(scale_p=1, rotate_p=1))
    assert set(np.unique(out_mask.numpy())) <= {0, 5, 9}


def test_no_augmentation_crops_without_changing_values():
    image, mask = _pair(32, 32)
    out_image, out_mask = augment_pair(image, mask, 32, np.random.default_rng(0), NO_AUGMENTATION)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_pad_to_multiple():
    assert pad_to_multiple(np.ones((30, 33)), 16).shape == (32, 48)
    assert pad_to_multiple(np.ones((2, 32, 32)), 16).shape == (2, 32, 32)


def test_weight_decay_skips_biases_norms_and_frozen_parameters():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1))
    model[2].weight.requires_grad_(False)
    groups = parameter_groups(model, 0.1)
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert decay == {id(model[0].weight)}
    assert no_decay == {id(model[0].bias), id(model[1].weight), id(model[1].bias), id(model[2].bias)}
    optimizer = make_optimizer(model, 0.003, 0.1)
    scheduler = make_scheduler(optimizer, 0.003, 10, 0.3)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(0.003, rel=0.05) and lrs[0] < 0.001 and lrs[-1] < 0.001


def test_config_checks_fields_with_clear_messages(tmp_path):
    config = FinetuneConfig(model="M", train_dirs=[tmp_path], new_name="M_ft")
    assert config.train_dirs == (tmp_path,)
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="layers"):
        FinetuneConfig(model="M", train_dirs=[tmp_path], new_name="x", layers="stage5")
    with pytest.raises(ConfigError, match="new_name"):
        FinetuneConfig(model="M", train_dirs=[tmp_path], new_name="bad/name")
    with pytest.raises(ConfigError, match="batch_size"):
        FinetuneConfig(model="M", train_dirs=[tmp_path], new_name="x", batch_size=0)
    with pytest.raises(ConfigError, match="train_dirs"):
        FinetuneConfig(model="M", train_dirs=[], new_name="x")
    with pytest.raises(ConfigError, match="unknown setting"):
        FinetuneConfig.from_dict({**config.to_dict(), "epochs": 3})
    assert nearest_valid_sizes(250, 16) == (240, 256)
    assert nearest_valid_sizes(100, 128) == (128, 256)
