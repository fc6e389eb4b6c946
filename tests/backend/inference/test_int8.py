"""Int8 inference (backend/inference/int8.py): which parts are quantized, the agreement guard,
the choice in Engine2D, the cache per model, and the switch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empanada_desktop.backend.inference import int8
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.model_config import ModelConfig

from tests.backend.conftest import build_tiny

pytestmark = pytest.mark.skipif(int8.unavailable_reason(torch.device("cpu")) is not None,
                                reason=str(int8.unavailable_reason(torch.device("cpu"))))


def normalised(image: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(image).float()[None, None] / 255.0 - 0.5) / 0.2


def textured(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = 110 + 60 * np.sin(yy / 9.0) * np.cos(xx / 13.0) + rng.normal(0, 12, shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def config_for(model) -> ModelConfig:
    return ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="tiny.pth",
                       padding_factor=16, architecture="PanopticDeepLabPR", encoder="resnet18")


def test_every_part_but_pointrend_is_quantized_and_close_to_float32(monkeypatch):
    """Agreement of the labels is measured on a trained model by benchmarks/inference_speed.py;
    random weights label nothing, so here the int8 encoder's features are compared instead."""
    monkeypatch.setattr(int8, "MIN_AGREEMENT", 0.0)  # random weights: labels are noise
    monkeypatch.setattr(int8, "bf16_point_head_wanted", lambda: False)  # PointRend float32 (see below)
    model = build_tiny()
    x = normalised(textured((256, 256)))
    monkeypatch.setattr(int8, "full_range_activations", lambda: True)  # with VNNI: the heads' hidden blocks too
    result = int8.quantize(model, int8.calibration_tiles(x, size=128))
    units = {"encoder", "semantic_head.head.0", "ins_xy.head.0"} | {
        f"{decoder}.{part}" for decoder in ("semantic_decoder", "instance_decoder")
        for part in ("aspp", "project.0", "fuse.0")}
    assert set(int8.quantization_units(model)) == units
    assert set(result.parts) == units  # the first level: every unit in int8
    monkeypatch.setattr(int8, "full_range_activations", lambda: False)  # 7-bit activations: heads float32
    assert set(int8.quantization_units(model)) == units - {"semantic_head.head.0", "ins_xy.head.0"}
    for float_part in (result.module.semantic_pr, result.module.ins_center, result.module.semantic_head.head[1],
                       result.module.ins_xy.head[1]):  # PointRend, the center head, the predictions
        assert not any("quantized" in type(m).__module__ for m in float_part.modules())
    kinds = {type(m).__module__ for m in result.module.encoder.modules()}
    assert any("quantized" in kind for kind in kinds), kinds  # really int8 kernels
    with torch.inference_mode():
        ref = model.encoder(x)
        out = result.module.encoder(x)
    for a, b in zip(ref, out):
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.99
    assert model.encoder.layer1[0].conv1.weight.dtype == torch.float32  # the original is untouched


def test_disagreement_keeps_float32(monkeypatch):
    monkeypatch.setattr(int8, "MIN_AGREEMENT", 1.01)  # nothing can agree this well
    model = torch.jit.script(build_tiny())
    engine = Engine2D(model, config_for(model), InferenceConfig(int8="on"), device="cpu")
    labels = engine.segment(textured((128, 128)))
    assert engine.precision == "float32"
    assert "disagree" in engine.precision_note
    reference = Engine2D(model, config_for(model), InferenceConfig(int8="off"), device="cpu")
    assert np.array_equal(labels, reference.segment(textured((128, 128))))
    # The verdict is kept for this model: the next engine does not calibrate again.
    assert isinstance(int8.cached(model), str)


def test_engine_choice_and_cache_per_model(monkeypatch):
    monkeypatch.setattr(int8, "MIN_AGREEMENT", 0.0)  # random weights: see the first test
    model = torch.jit.script(build_tiny(seed=1))
    config = config_for(model)
    image = textured((160, 144))
    small = Engine2D(model, config, InferenceConfig(int8="auto"), device="cpu")
    small.segment(image)
    assert small.precision == "float32" and "repay" in small.precision_note  # one small image
    off = Engine2D(model, config, InferenceConfig(int8="off"), device="cpu")
    float_labels = off.segment(image)
    assert off.precision == "float32" and int8.cached(model) is None

    stack = Engine2D(model, config, InferenceConfig(int8="auto"), device="cpu", optimize=True)
    assert stack.prepare(image).startswith("int8")
    labels = stack.segment(image)
    assert stack.precision == "int8" and labels.shape == image.shape
    assert isinstance(int8.cached(model), int8.Int8Model)
    assert float_labels.shape == labels.shape
    # Calibrated once: a later small-image engine on the same model uses the int8 copy at once.
    later = Engine2D(model, config, InferenceConfig(int8="auto"), device="cpu")
    later.segment(image)
    assert later.precision == "int8" and later._runnable is int8.cached(model).module


def test_model_without_native_architecture_stays_float32():
    model = torch.jit.script(build_tiny(seed=2))
    config = ModelConfig(class_names={1: "mito"}, labels=(1,), thing_list=(1,), model="x.pth", padding_factor=16)
    engine = Engine2D(model, config, InferenceConfig(int8="on"), device="cpu")
    engine.segment(textured((64, 64)))
    assert engine.precision == "float32" and "architecture" in engine.precision_note


def test_not_on_gpus_and_bad_choice_is_a_config_error():
    assert int8.unavailable_reason(torch.device("cuda")) is not None
    assert not int8.wanted("on", torch.device("cuda"), pixels=10**8, reused=True, cached=False)
    with pytest.raises(ConfigError, match="int8"):
        InferenceConfig(int8="yes")


def test_calibration_tiles_are_inside_and_padded_multiples():
    x = torch.zeros(1, 1, 1000, 1600)
    tiles = int8.calibration_tiles(x, size=512, count=2)
    assert len(tiles) == 2 and all(t.shape[-2:] == (512, 512) for t in tiles)
    assert int8.calibration_tiles(torch.zeros(1, 1, 256, 256), size=512) [0].shape[-1] == 256


def test_fallback_keeps_more_in_float32_until_int8_agrees(monkeypatch):
    """Each level keeps more units in float32; the encoder is int8 in all of them."""
    monkeypatch.setattr(int8, "full_range_activations", lambda: True)
    monkeypatch.setattr(int8, "bf16_point_head_wanted", lambda: False)
    model = build_tiny(seed=3)
    units = int8.quantization_units(model)
    order = int8._fallback_order(units)
    assert order[0] == [] and set(order[1]) == {"semantic_head.head.0", "ins_xy.head.0"}
    assert all(set(a) < set(b) for a, b in zip(order, order[1:]))
    assert all("encoder" not in level for level in order)
    assert set(order[-1]) == set(units) - {"encoder"}
    x = normalised(textured((128, 128)))
    seen = []
    real = int8.agreement_of

    def strict_until_last(a, b):
        seen.append(real(a, b))
        return real(a, b) if len(seen) == len(order) else 0.0  # only the last level "agrees"

    monkeypatch.setattr(int8, "agreement_of", strict_until_last)
    result = int8.quantize(model, [x])
    assert len(seen) == len(order) and result.parts == ("encoder",)
    monkeypatch.setattr(int8, "full_range_activations", lambda: False)  # no heads: no repeated level
    order = int8._fallback_order(int8.quantization_units(model))
    assert order[0] == [] and all(set(a) < set(b) for a, b in zip(order, order[1:]))


def test_pointrend_mlp_in_bf16_first_then_float32_when_it_disagrees(monkeypatch):
    """On CPUs with native bf16 the first try runs PointRend's point MLP in bf16; when that
    level disagrees, the same int8 level is tried with the MLP in float32 before anything else."""
    monkeypatch.setattr(int8, "bf16_point_head_wanted", lambda: True)
    model = build_tiny(seed=3)
    x = normalised(textured((128, 128)))
    result = int8.quantize(model, [x])  # random weights label nothing: the first level agrees
    assert "semantic_pr.point_head (bf16)" in result.parts
    wrapped = result.module.semantic_pr.point_head
    assert isinstance(wrapped, int8.Bf16PointHead)
    fine, coarse = torch.randn(1, wrapped.module.fc_layers[0][0].in_channels - 1, 500), torch.randn(1, 1, 500)
    with torch.inference_mode():
        plain, bf16 = wrapped.module(fine, coarse), wrapped(fine, coarse)
    assert bf16.dtype == torch.float32 and not torch.equal(plain, bf16)  # really bf16 arithmetic ...
    assert torch.allclose(plain, bf16, rtol=0.05, atol=0.05 * float(plain.abs().max()))  # ... and close

    seen = []
    real = int8.agreement_of

    def bf16_disagrees(a, b):
        seen.append(isinstance(model_under_test[0].semantic_pr.point_head, int8.Bf16PointHead))
        return 0.0 if seen[-1] else real(a, b)

    model_under_test = []
    real_set = int8._set

    def remember(parent, dotted, module):
        model_under_test[:] = [parent]
        real_set(parent, dotted, module)

    monkeypatch.setattr(int8, "_set", remember)
    monkeypatch.setattr(int8, "agreement_of", bf16_disagrees)
    result = int8.quantize(model, [x])
    assert seen[:2] == [True, False]  # same int8 level, PointRend back in float32
    assert not any("bf16" in part for part in result.parts)
    assert not isinstance(result.module.semantic_pr.point_head, int8.Bf16PointHead)


def test_agreement_counts_objects_as_well_as_pixels():
    a = np.zeros((40, 40), np.int32)
    a[5:15, 5:15], a[20:30, 20:30] = 1, 2
    assert int8.agreement_of([a], [a.copy()]) == 1.0
    split = a.copy()
    split[20:30, 25:30] = 3  # same foreground, one object cut in two
    assert int8.agreement_of([a], [split]) < 0.99
    assert int8.agreement_of([a > 0], [split > 0]) == 1.0  # masks: pixels only
    empty = np.zeros_like(a)
    assert int8.agreement_of([empty], [empty]) == 1.0


def test_stack_runs_in_int8_along_every_plane(monkeypatch, tmp_path):
    """segment_volume calibrates once (middle xy slice) and uses the int8 model for xy, xz and yz."""
    import tifffile

    from empanada_desktop.backend.events import Message
    from empanada_desktop.backend.events import run_to_end
    from empanada_desktop.backend.inference.engine3d import segment_volume

    monkeypatch.setattr(int8, "MIN_AGREEMENT", 0.0)  # random weights: see the first test
    model = torch.jit.script(build_tiny(seed=4))
    volume = np.stack([textured((48, 64), seed=z) for z in range(16)])
    config = InferenceConfig(int8="auto", ortho=True, semantic_only=True, confidence_thr=0.01, min_size=1,
                             min_extent=1)
    calls = []
    real = int8.quantize
    monkeypatch.setattr(int8, "quantize", lambda *a, **k: calls.append(1) or real(*a, **k))
    events, out = run_to_end(segment_volume(model, volume, config, tmp_path / "labels.tif",
                                            model_config=config_for(model), device="cpu"))
    notes = [e.text for e in events if isinstance(e, Message)]
    assert any(text.startswith("model precision: int8") for text in notes), notes
    assert calls == [1]  # one calibration for the three planes
    assert tifffile.imread(out).shape == volume.shape


def test_bf16_point_head_computes_the_float32_head_points_major():
    """The bf16 point MLP is the same function as the Conv1d head (batch of 2, three classes, the
    coarse logits appended to every layer), up to bf16 rounding, in float32 and the same layout."""
    from empanada_desktop.backend.models.point_rend import StandardPointHead

    torch.manual_seed(0)
    head = StandardPointHead(24, 3, 32, 3).eval()
    torch.nn.init.normal_(head.predictor.weight, std=0.2)  # its default init is near zero
    fine, coarse = torch.randn(2, 24, 700), torch.randn(2, 3, 700)
    fast = int8.Bf16PointHead(head)
    with torch.inference_mode():
        plain, bf16 = head(fine, coarse), fast(fine, coarse)
    assert bf16.shape == plain.shape == (2, 3, 700) and bf16.dtype == torch.float32
    assert not torch.equal(plain, bf16)
    assert float((plain - bf16).abs().max()) < 0.02 * float(plain.abs().max())


@pytest.mark.parametrize("reduce_range", [False, True])
def test_fast_histogram_search_finds_the_same_ranges_as_torch(reduce_range):
    """The observer's range search on Python floats gives exactly torch's qparams, over shapes of
    activations met in the model (ReLU outputs with many zeros, heavy tails, a few values, two
    calibration batches that widen the range)."""
    from torch.ao.quantization.observer import HistogramObserver

    generator = torch.Generator().manual_seed(0)
    batches = [
        [torch.randn(1, 64, 32, 32, generator=generator).relu()],
        [torch.randn(50_000, generator=generator) ** 3],
        [torch.rand(10_000, generator=generator) * 0.01 + 5.0],
        [torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0, 3.0])],
        [torch.randn(20_000, generator=generator), 3 * torch.randn(20_000, generator=generator) + 1],
    ]
    fast_class = int8._histogram_observer()
    for tensors in batches:
        ours, theirs = fast_class(reduce_range=reduce_range), HistogramObserver(reduce_range=reduce_range)
        for t in tensors:
            ours(t)
            theirs(t)
        scale, zero = ours.calculate_qparams()
        scale_ref, zero_ref = theirs.calculate_qparams()
        assert torch.equal(scale, scale_ref) and torch.equal(zero, zero_ref)


@pytest.mark.parametrize("owned", [False, True])
def test_float32_parts_are_the_model_as_it_was(monkeypatch, owned):
    """Quantizing leaves the units it starts from unchanged: at the last fallback level the units
    kept in float32 compute exactly what the model computed before (no copies are made of them,
    and with ``owned`` none of the model either); without ``owned`` the model stays as it was."""
    import copy

    monkeypatch.setattr(int8, "bf16_point_head_wanted", lambda: False)
    model = build_tiny(seed=3).eval()
    pristine = copy.deepcopy(model)
    levels = len(int8._fallback_order(int8.quantization_units(model)))
    calls = []

    def last_level_agrees(a, b):
        calls.append(1)
        return 1.0 if len(calls) == levels else 0.0

    monkeypatch.setattr(int8, "agreement_of", last_level_agrees)
    x = normalised(textured((128, 128)))
    result = int8.quantize(model, [x], owned=owned)
    assert result.parts == ("encoder",) and (result.module is model) == owned
    if not owned:
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), pristine.state_dict().values()))
        assert type(model.encoder) is type(pristine.encoder)
    for name in ("semantic_decoder.aspp", "instance_decoder.fuse.0"):
        kept, before = result.module.get_submodule(name), pristine.get_submodule(name)
        assert type(kept) is type(before)
        assert kept.state_dict().keys() == before.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), before.state_dict().values()))
