"""Native architectures: output contract, scripting, parameter counts, batch-norm fusion."""

from __future__ import annotations

import pytest
import torch

from empanada_desktop.backend.models import ARCHITECTURES, build_model, fuse_encoder_batchnorm
from empanada_desktop.core.errors import ConfigError
from tests.backend.conftest import build_tiny

# (architecture, smallest valid input side)
CASES = [("PanopticDeepLabPR", 64), ("PanopticBiFPNPR", 128)]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("architecture,size", CASES)
def test_eval_outputs_follow_the_contract(architecture, size):
    model = build_tiny(architecture)
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        out = model(x)
        quarter = model(x, 2, False)
    assert set(out) == {"sem_logits", "ctr_hmp", "offsets"}
    assert out["sem_logits"].shape == (2, 1, size, size)
    assert out["ctr_hmp"].shape == (2, 1, size, size)
    assert out["offsets"].shape == (2, 2, size, size)
    assert quarter["ctr_hmp"].shape == (2, 1, size // 4, size // 4)
    assert quarter["offsets"].shape == (2, 2, size // 4, size // 4)
    assert torch.isfinite(out["sem_logits"]).all()


@pytest.mark.parametrize("architecture,size", CASES)
def test_train_outputs_follow_the_contract(architecture, size):
    model = build_tiny(architecture, num_classes=3).train()
    out = model(torch.randn(2, 1, size, size))
    assert set(out) == {"sem_logits", "sem_points", "point_coords", "ctr_hmp", "offsets"}
    assert out["sem_logits"].shape == (2, 3, size, size)
    assert out["sem_points"].shape == (2, 3, 1024)
    assert out["point_coords"].shape == (2, 1024, 2)
    assert 0 <= out["point_coords"].min() and out["point_coords"].max() <= 1
    loss = sum(v.float().mean() for k, v in out.items() if k != "point_coords")
    loss.backward()
    assert model.semantic_pr.point_head.predictor.weight.grad is not None


def test_render_steps_set_the_semantic_resolution():
    model = build_tiny()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64), 1)
    assert out["sem_logits"].shape == (1, 1, 32, 32)


def test_pointrend_changes_only_uncertain_cells():
    # With render_steps=1 every cell of a 16x16 coarse map upsampled to 32x32 (1024 cells) is
    # at most subdivision_num_points; lowering it to 10 must leave all but 10 cells bilinear.
    model = build_tiny(subdivision_num_points=10)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        out = model(x, 1)["sem_logits"]
        features = model.encoder(x)
        coarse = model.semantic_head(model.semantic_decoder(features))
        plain = torch.nn.functional.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
    changed = (out != plain).sum().item()
    assert 0 < changed <= 10


@pytest.mark.parametrize("architecture,size", CASES)
def test_scripted_model_gives_the_same_outputs(architecture, size):
    from empanada_desktop.backend.torchscript import plain_execution, script_model

    model = build_tiny(architecture)
    scripted = script_model(model)
    x = torch.randn(1, 1, size, size)
    with torch.no_grad(), plain_execution():
        expected, got = model(x), scripted(x)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key])


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match="PanopticDeepLabPR"):
        build_model("UNet")
    with pytest.raises(ConfigError, match="resnet50"):
        build_model("PanopticDeepLabPR", encoder="vgg16")


@pytest.mark.parametrize(
    "architecture,unfused,fused",
    # MitoNet_v1 and MitoNet_v1_mini: the released files hold about 55.1 M and 27.3 M.
    [("PanopticDeepLabPR", 55_158_486, 55_131_926), ("PanopticBiFPNPR", 27_350_786, 27_324_226)],
)
def test_mitonet_parameter_counts(architecture, unfused, fused):
    with torch.device("meta"):
        assert _count(build_model(architecture, encoder="resnet50")) == unfused
        assert _count(build_model(architecture, encoder="resnet50", fused_encoder=True)) == fused


def test_fused_encoder_has_the_released_parameter_names():
    with torch.device("meta"):
        names = set(build_model("PanopticDeepLabPR", encoder="resnet50", fused_encoder=True).state_dict())
    for name in ("encoder.conv1.0.weight", "encoder.conv1.0.bias", "encoder.layer1.0.conv1.0.bias",
                 "encoder.layer1.0.conv3.bias", "encoder.layer1.0.downsample.0.bias",
                 "semantic_pr.point_head.predictor.weight", "instance_decoder.aspp.convs.0.0.weight"):
        assert name in names
    assert not any(".bn" in n for n in names if n.startswith("encoder."))


@pytest.mark.parametrize("architecture,size", CASES)
def test_fusing_batchnorm_keeps_outputs_and_matches_fused_structure(architecture, size):
    native = build_tiny(architecture)
    with torch.no_grad():
        for module in native.encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
        x = torch.randn(1, 1, size, size)
        before = native(x, 2, False)
        fuse_encoder_batchnorm(native)
        after = native(x, 2, False)
    for key in ("ctr_hmp", "offsets"):
        torch.testing.assert_close(after[key], before[key], rtol=1e-4, atol=1e-5)
    # The fused model's state dict loads into a model built fused from the start.
    fresh = build_model(architecture, encoder="resnet18", fused_encoder=True)
    fresh.load_state_dict(native.state_dict(), strict=True)


def test_all_architectures_are_registered():
    assert set(ARCHITECTURES) == {"PanopticDeepLabPR", "PanopticBiFPNPR"}


@pytest.mark.parametrize("architecture", ["PanopticDeepLabPR", "PanopticBiFPNPR"])
def test_built_for_weights_skips_initialisation_and_loads_exactly(architecture):
    """``build_model_for_weights`` (no random numbers: the weights come from a file next) has the
    same parameters and buffers as ``build_model``, on the CPU, and after a strict load computes
    what the source model computes."""
    from empanada_desktop.backend.models import build_model_for_weights

    source = build_model(architecture, encoder="resnet18").eval()
    state = source.state_dict()
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    empty = build_model_for_weights(architecture, encoder="resnet18")
    assert torch.equal(torch.rand(1), before)  # it drew no random numbers
    assert all(t.device.type == "cpu" for t in empty.state_dict().values())
    assert empty.state_dict().keys() == state.keys()
    empty.load_state_dict(state, strict=True)
    x = torch.randn(1, 1, 128, 128)
    with torch.no_grad():
        a = source(x, render_steps=1, interpolate_ins=False)
        b = empty.eval()(x, render_steps=1, interpolate_ins=False)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("shape,size", [((4, 32, 8, 8), [32, 32]), ((2, 16, 16, 16), [64, 64]), ((1, 1, 8, 8), [16, 16]),
                                        ((2, 3, 5, 7), [9, 20])])
@pytest.mark.parametrize("training", [False, True])
def test_resize_bilinear_matches_interpolate_in_bf16(shape, size, training):
    """The decoder's resize takes its own routes for bf16 batches on the CPU (two float32 matrix
    products while training, a channels-last detour otherwise); values, gradients and memory
    format must be what F.interpolate gives, within one bf16 rounding."""
    import torch.nn.functional as F

    from empanada_desktop.backend.models import blocks
    from empanada_desktop.backend.models.blocks import resize_bilinear

    torch.manual_seed(0)
    base = torch.randn(shape).to(torch.bfloat16)
    a = base.clone().requires_grad_(training)
    b = base.clone().requires_grad_(training)
    ours = resize_bilinear(a, size)
    ref = F.interpolate(b, size=size, mode="bilinear", align_corners=True)
    exact = F.interpolate(base.double(), size=size, mode="bilinear", align_corners=True)
    assert ours.dtype == ref.dtype == torch.bfloat16
    assert ours.is_contiguous() and ours.shape == ref.shape
    # at most one bf16 rounding away from the exact values, as torch's own kernel
    ulp = exact.abs().clamp_min(1e-3) * 2.0 ** -7
    assert ((ours.double() - exact).abs() <= ulp).all()
    assert ((ref.double() - exact).abs() <= ulp).all()
    if training:
        weight = torch.randn(ref.shape).to(torch.bfloat16)
        (ours.float() * weight.float()).sum().backward()
        (ref.float() * weight.float()).sum().backward()
        assert a.grad.is_contiguous() and a.grad.dtype == torch.bfloat16
        torch.testing.assert_close(a.grad.float(), b.grad.float(), rtol=2e-2, atol=5e-2)
    # float32 takes torch's own path unchanged
    x = torch.randn(shape)
    assert torch.equal(resize_bilinear(x, size), F.interpolate(x, size=size, mode="bilinear", align_corners=True))
    # the interpolation matrices: rows sum to one, identity at equal sizes, corners aligned
    m = blocks.bilinear_matrix(shape[2], size[0])
    torch.testing.assert_close(m.sum(1), torch.ones(size[0]))
    assert m[0, 0] == 1 and m[-1, -1] == 1
    assert torch.equal(blocks.bilinear_matrix(7, 7), torch.eye(7))
