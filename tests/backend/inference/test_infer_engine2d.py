import numpy as np
import pytest
import torch

from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.core.errors import ConfigError, ImageReadError
from empanada_desktop.core.metrics import panoptic_quality

from .fakes import BlobModel, blob_image, model_config


def engine(**settings):
    return Engine2D(BlobModel(), model_config(), InferenceConfig(**settings), device="cpu")


def truth(shape, centers, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centers):
        out[np.hypot(yy - cy, xx - cx) <= radius * 0.66] = k + 1  # intensity >= 0.75 inside
    return out


CENTERS = [(20, 20), (20, 70), (60, 45), (75, 90)]


def test_segments_blobs_with_panoptic_ids():
    image = blob_image((100, 110), CENTERS, 12)  # not a multiple of 16: padded and cropped
    labels = engine().segment(image)
    assert labels.shape == image.shape and labels.dtype == np.int32
    ids = np.unique(labels[labels > 0])
    assert len(ids) == 4
    assert (ids // 100_000 == 1).all()  # class 1 * max_objects + instance
    assert panoptic_quality(labels, truth(image.shape, CENTERS, 12))["f1"] == 1.0


def test_touching_blobs_are_split():
    image = blob_image((64, 96), [(32, 30), (32, 58)], 16)
    labels = engine().segment(image)
    assert len(np.unique(labels[labels > 0])) == 2
    assert labels[32, 30] != labels[32, 58]


def test_tiled_equals_untiled_and_seam_objects_keep_one_label():
    centers = [(40, 60), (70, 128), (150, 200), (200, 40), (128, 128)]
    image = blob_image((256, 260), centers, 20)
    whole = engine(tile_size=2048).segment(image)
    tiled_engine = engine(tile_size=96, tile_overlap=32)
    tiled = tiled_engine.segment(image)
    assert np.array_equal(whole, tiled)
    # The blob at (70, 128) spans the seam between tiles; it has exactly one label.
    blob = truth(image.shape, centers, 20) == 2
    assert len(np.unique(tiled[blob])) == 1 and tiled[70, 128] > 0


def test_downsampling_and_fine_boundaries_agree_with_default():
    image = blob_image((128, 128), CENTERS, 14)
    base = engine().segment(image)
    for settings in ({"downsample": 2}, {"fine_boundaries": True}, {"downsample": 2, "fine_boundaries": True}):
        other = engine(**settings).segment(image)
        r = panoptic_quality(other, base)
        assert r["tp"] == 4 and r["fp"] == 0, settings


def test_semantic_only_and_confidence():
    image = blob_image((64, 64), [(32, 32)], 20)
    labels = engine(semantic_only=True).segment(image)
    assert set(np.unique(labels)) == {0, 100_000}
    strict = engine(confidence_thr=0.9).segment(image)
    loose = engine(confidence_thr=0.3).segment(image)
    assert (strict > 0).sum() < (loose > 0).sum()


def test_center_threshold_drops_faint_objects():
    image = blob_image((64, 96), [(32, 24)], 14) | blob_image((64, 96), [(32, 72)], 14, peak=200, rim=195)
    for threshold, n_centers in ((0.1, 2), (0.3, 1)):
        e = engine(center_confidence_thr=threshold)
        _, instances = e.postprocess(e.forward(image))
        assert len(np.unique(instances[instances > 0])) == n_centers
    # Without its own center the faint blob's pixels join the bright blob's center; the final
    # labels are connected components, so it still comes out as a separate object.
    labels = engine(center_confidence_thr=0.3).segment(image)
    assert labels[32, 24] != labels[32, 72] and labels[32, 72] > 0


def test_max_objects_caps_and_sets_divisor():
    image = blob_image((64, 128), [(32, 16), (32, 56), (32, 96)], 10)
    labels = engine(max_objects=3).segment(image)
    ids = np.unique(labels[labels > 0])
    assert len(ids) == 2 and (ids // 3 == 1).all()


def test_bad_inputs():
    with pytest.raises(ImageReadError, match="2D"):
        engine().segment(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ConfigError, match="downsample"):
        InferenceConfig(downsample=3)
    with pytest.raises(ConfigError, match="32-bit"):
        engine(max_objects=2**30).segment(np.zeros((8, 8), np.uint8))


def test_tiny_image_is_padded():
    labels = engine().segment(blob_image((9, 7), [(4, 3)], 4))
    assert labels.shape == (9, 7)


def test_real_model_runs_untiled_and_tiled():
    """A random-weight native resnet18 Panoptic-DeepLab: shapes, dtypes and tiling run."""
    pytest.importorskip("empanada_desktop.backend.models")
    from empanada_desktop.backend.models import build_model

    torch.manual_seed(0)
    model = build_model("PanopticDeepLabPR", encoder="resnet18")
    image = (np.random.default_rng(0).random((80, 72)) * 255).astype(np.uint8)
    for settings in ({}, {"tile_size": 64, "tile_overlap": 16}, {"downsample": 2, "fine_boundaries": True}):
        labels = Engine2D(model, model_config(), InferenceConfig(**settings), device="cpu").segment(image)
        assert labels.shape == image.shape and labels.dtype == np.int32


def test_optimized_torchscript_model_gives_the_same_outputs():
    """Engine2D(optimize=True) runs a frozen, oneDNN-optimised copy; results must not change."""
    from empanada_desktop.backend.torchscript import optimized_for_cpu
    from empanada_desktop.backend.models import build_model

    torch.manual_seed(0)
    scripted = torch.jit.script(build_model("PanopticDeepLabPR", encoder="resnet18").eval())
    optimized = optimized_for_cpu(scripted)
    assert optimized is not scripted and isinstance(optimized, torch.jit.ScriptModule)
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        plain, fast = scripted(x), optimized(x)
    for key in ("sem_logits", "ctr_hmp", "offsets"):
        torch.testing.assert_close(fast[key], plain[key], rtol=1e-3, atol=1e-3)
    image = (np.random.default_rng(0).random((80, 72)) * 255).astype(np.uint8)
    plain_labels = Engine2D(scripted, model_config(), InferenceConfig(), device="cpu").segment(image)
    fast_labels = Engine2D(scripted, model_config(), InferenceConfig(), device="cpu", optimize=True).segment(image)
    np.testing.assert_array_equal(fast_labels, plain_labels)
    native = build_model("PanopticDeepLabPR", encoder="resnet18")
    assert optimized_for_cpu(native) is native  # eager modules run as they are
