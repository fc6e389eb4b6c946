"""Int8 inference on the CPU: the model's convolutions in 8-bit integers, calibrated on the image.

Why: on a CPU without bfloat16 float32 arithmetic is the ceiling (about 140-220 GFLOP/s on the
team's 2-core machines), and int8 matrix kernels (fbgemm and oneDNN, with VNNI where the CPU has
it) do several times more operations per second. See docs/CPU_SPEED.md for the measurements.

How: the TorchScript model is rebuilt as our native architecture (``loading.to_native``; a model
whose config names no native architecture stays float32), and its parts (``quantization_units``:
the encoder but its stem, the decoders' ASPP, projections and fusion blocks, other architectures'
FPNs, the semantic and offset heads' hidden blocks) are quantized with torch.ao's FX graph-mode
static quantization for the "x86" backend: int8 weights per output channel, activation ranges
observed on calibration tiles cut from the image being segmented. Tensors between parts are
float32. PointRend (it refines a few thousand sampled points), the center head and the heads'
prediction convolutions stay float32: their outputs are compared with thresholds and peaks.

Safety: calibration runs the observed (float32) model on the tiles, so their float32 outputs come
for free; the int8 model then segments the same tiles (model and post-processing: the labels a
user would get) and is used only when it agrees with float32 (foreground IoU, and F1 of the
objects matched at IoU > 0.5, both at least ``MIN_AGREEMENT``), keeping more parts in float32
until it does (``_fallback_order``); otherwise the engine says so and stays in float32.
A quantized model is kept per loaded model (weakly), so the next image or slice does not pay the
calibration again.

``InferenceConfig.int8``: "auto" (int8 on x86 CPUs when the work is large enough to repay the
calibration: a stack, a block-wise job, a large image, or an int8 model already calibrated for
this model), "on" (always on the CPU, when possible), "off".
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import platform
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

from empanada_desktop.backend.inference.config import INT8_CHOICES  # noqa: E402,F401 - "auto", "on", "off"
MIN_AGREEMENT = 0.98  # foreground IoU and object F1 of int8 vs float32 on the calibration tiles:
# a 512 px slice holds a few dozen objects, so one object cut differently costs about 0.015 (the
# benchmark model of make_bench_model.py: 0.996 on its 1024 px image, 0.985 on a 512 px slice);
# the whole-image criterion (IoU >= 0.99, counts within 1%) is measured by
# benchmarks/inference_speed.py
# (model output dict, tile (h, w)) -> label image, as the engine would post-process it
Labeler = Callable[[dict, tuple], np.ndarray]
# Pixels per side of a calibration tile (a multiple of every padding factor: 16 and 128). The
# activations of the ASPP depend on the input's size (its pooling and dilated branches): ranges
# observed on 512 px tiles clipped a 1024 px image (foreground IoU 0.32 against float32), so the
# engine calibrates and checks at its own tile size (an image up to it calibrates whole).
CALIBRATION_TILE = 1024
CALIBRATION_TILES = 2
EXAMPLE_SIZE = 128  # px of the crop whose forward pass gives FX its example inputs (padding-aligned)
AUTO_MIN_PIXELS = 4096 * 4096  # "auto" calibrates for a single image only from this size up
# Parts left in float32: PointRend, and the center head, whose peaks become objects (with its
# hidden block in int8 the benchmark image had 135 objects instead of 132, with only the other
# two heads' hidden blocks in int8 133, as with all heads in float32).
KEEP_FLOAT = frozenset({"semantic_pr", "ins_center"})


class _SharedExclusive:
    """A readers-writer lock. torch.fx traces by patching ``nn.Module.__call__`` for the whole
    process, so a model running in another thread while a model is being traced would be traced
    too (and fail: "module is not installed as a submodule"). Model runs take it shared
    (``running_model``), tracing takes it exclusive (``tracing``)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self):
        with self._condition:
            while self._exclusive:
                self._condition.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                if not self._shared:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._condition:
            while self._exclusive or self._shared:
                self._condition.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


_TRACE_LOCK = _SharedExclusive()
running_model = _TRACE_LOCK.shared  # ``with running_model():`` around a model call (any thread)
tracing = _TRACE_LOCK.exclusive  # ``with tracing():`` around torch.fx tracing; never inside running_model


class Int8Unavailable(Exception):
    """Why int8 cannot be used for this model or machine (the engine then runs float32)."""


@dataclass(frozen=True)
class Int8Model:
    """A quantized copy of a model, with what its calibration found.

    Attributes:
        module: the model with its parts quantized; same call contract as the original.
        agreement: foreground IoU of its output against float32 on the calibration tiles.
        seconds: the time quantization and the agreement check took.
        parts: the names of the quantized parts.
    """

    module: nn.Module
    agreement: float
    seconds: float
    parts: tuple[str, ...]


def unavailable_reason(device: torch.device) -> str | None:
    """None when int8 can run on ``device``; otherwise why not (one sentence)."""
    if device.type != "cpu":
        return f"int8 inference is for the CPU; this job runs on {device}"
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "x86", "i686"):
        return f"int8 kernels are only used on x86 CPUs here (this is {machine or 'unknown'})"
    if "x86" not in torch.backends.quantized.supported_engines:
        return "this torch build has no x86 quantized engine"
    from empanada_desktop.backend.cpu import cpu_capability_info

    cpu = cpu_capability_info()
    if cpu.flags and "avx2" not in cpu.flags:
        return f"this CPU ({cpu.model}) has no AVX2, which the int8 kernels need to be fast"
    return None


def wanted(choice: str, device: torch.device, *, pixels: int, reused: bool, cached: bool) -> bool:
    """Whether a job should try int8: ``choice`` from the config, the work it has ahead.

    ``pixels``: of the image in hand; ``reused``: the engine will segment many slices or tiles;
    ``cached``: this model already has a calibrated int8 copy.
    """
    if choice == "off" or unavailable_reason(device) is not None:
        return False
    if choice == "on":
        return True
    return cached or reused or pixels >= AUTO_MIN_PIXELS


def calibration_tiles(x: torch.Tensor, size: int = CALIBRATION_TILE, count: int = CALIBRATION_TILES) -> list[torch.Tensor]:
    """Up to ``count`` tiles of ``x`` (1, 1, H, W), spread along the image's diagonal.

    ``x`` is the normalised, padded model input, so the tiles are multiples of the padding
    factor when ``size`` is (or the image itself, when smaller than a tile).
    """
    height, width = x.shape[-2:]
    th, tw = min(size, height), min(size, width)
    if (th, tw) == (height, width):
        return [x]
    tiles = []
    for k in range(count):
        fraction = (k + 0.5) / count
        y0 = int((height - th) * fraction) // 16 * 16
        x0 = int((width - tw) * fraction) // 16 * 16
        tiles.append(x[..., y0 : y0 + th, x0 : x0 + tw])
    return tiles


def _foreground(sem_logits: torch.Tensor, confidence: float) -> torch.Tensor:
    if sem_logits.shape[1] == 1:
        return torch.sigmoid(sem_logits[:, 0]) >= confidence
    return sem_logits.argmax(1) > 0


def foreground_iou(a, b) -> float:
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def quantization_units(model: nn.Module) -> list[str]:
    """Dotted names of the submodules quantized one by one, heaviest first.

    Every direct child but PointRend is a unit, except that a DeepLab decoder is split into its
    ASPP, its low-level projections and its fusion blocks: between units the tensors are float32,
    so the decoder's resizing and concatenation stay exact (quantizing them cost agreement).
    """
    units: list[str] = []
    for name, child in model.named_children():
        if child is None or name in KEEP_FLOAT:
            continue
        if type(child).__name__ == "PanopticDeepLabDecoder":
            units.append(f"{name}.aspp")
            units += [f"{name}.project.{i}" for i in range(len(child.project))]
            units += [f"{name}.fuse.{i}" for i in range(len(child.fuse))]
        elif type(child).__name__ == "PanopticDeepLabHead":
            # Only the hidden block (separable conv, batch norm, ReLU): the final 1x1 prediction
            # stays float32, so the outputs are sums of 256 dequantized values, not 256 levels.
            # With 7-bit activations (no VNNI) the benchmark image had 134 objects instead of 132
            # (133 with the heads in float32), so there the heads stay float32.
            if full_range_activations():
                units.append(f"{name}.head.0")
        else:
            units.append(name)
    return units


def full_range_activations() -> bool:
    """8-bit activations need VNNI (or AMX): without it the int8 kernels multiply-add pairs into
    16 bits, which saturates unless activations keep to 7 bits (torch's "reduce_range")."""
    from empanada_desktop.backend.cpu import cpu_capability_info

    return bool(cpu_capability_info().flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def _histogram_observer():
    """torch's ``HistogramObserver`` with its range search (``_non_linear_param_search``) run on
    Python floats instead of one tensor element at a time: the same ranges (tested against
    torch's own), 0.35 s less per calibration of MitoNet_v1 (120 observers)."""
    from torch.ao.quantization.observer import HistogramObserver

    class FastSearchHistogramObserver(HistogramObserver):
        def _non_linear_param_search(self) -> tuple[torch.Tensor, torch.Tensor]:
            if self.histogram.size()[0] != self.bins:
                raise AssertionError("bins mismatch")
            bin_width = (self.max_val - self.min_val) / self.bins
            total = torch.sum(self.histogram).item()
            # float32 sums; a threshold is compared in float32 as torch compares a 0-d float32
            # tensor with a Python float
            cumulative = torch.cumsum(self.histogram, dim=0).tolist()
            step = 1e-5
            alpha, beta = 0.0, 1.0
            start_bin, end_bin = 0, self.bins - 1
            norm_min = float("inf")
            while alpha < beta:
                next_alpha, next_beta = alpha + step, beta - step
                low = float(np.float32(next_alpha * total))
                high = float(np.float32(next_beta * total))
                left, right = start_bin, end_bin
                while left < end_bin and cumulative[left] < low:
                    left += 1
                while right > start_bin and cumulative[right] > high:
                    right -= 1
                next_start_bin, next_end_bin = start_bin, end_bin
                if (left - start_bin) > (end_bin - right):
                    next_start_bin = left
                    alpha = next_alpha
                else:
                    next_end_bin = right
                    beta = next_beta
                if next_start_bin == start_bin and next_end_bin == end_bin:
                    continue
                norm = self._compute_quantization_error(next_start_bin, next_end_bin)
                if norm > norm_min:
                    break
                norm_min = norm
                start_bin, end_bin = next_start_bin, next_end_bin
            return self.min_val + bin_width * start_bin, self.min_val + bin_width * (end_bin + 1)

    return FastSearchHistogramObserver


def qconfig_mapping():
    """torch's "x86" recipe (int8 weights per output channel, activations observed by histogram),
    with the full 8-bit activation range where the CPU allows it: measured on the synthetic
    benchmark model, the decoders' ASPP agreed 0.9952 with float32 at 8 bits, 0.9889 at 7."""
    from torch.ao.quantization import QConfig, get_default_qconfig_mapping
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    return get_default_qconfig_mapping("x86").set_global(QConfig(
        activation=_histogram_observer().with_args(reduce_range=not full_range_activations()),
        weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric),
    ))


class Bf16PointHead(nn.Module):
    """PointRend's point MLP (``StandardPointHead``: 1x1 Conv1d layers, the coarse logits appended
    to every layer's input) in bf16, points-major: each layer is one (points x channels) by
    (channels x outputs) matrix product. oneDNN ran that in 14 ms per render step of 8192 points
    against 30 ms for the same Conv1d layers under bf16 autocast (and 37 ms in float32). The last
    layer (a few outputs) runs in float32; outputs are float32, (N, classes, points) as before.

    ``module`` keeps the float32 head, which this one copies its weights from.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        for i, layer in enumerate(module.fc_layers):
            conv = layer[0]
            self.register_buffer(f"weight{i}", conv.weight.detach()[:, :, 0].to(torch.bfloat16), persistent=False)
            self.register_buffer(f"bias{i}", conv.bias.detach().to(torch.bfloat16), persistent=False)
        self.layers = len(module.fc_layers)

    def forward(self, fine_features: torch.Tensor, coarse_logits: torch.Tensor) -> torch.Tensor:
        coarse = coarse_logits.transpose(1, 2)  # (N, points, classes)
        low = coarse.to(torch.bfloat16)
        x = torch.cat([fine_features.transpose(1, 2).to(torch.bfloat16), low], dim=2)
        for i in range(self.layers):
            hidden = torch.relu(F.linear(x, getattr(self, f"weight{i}"), getattr(self, f"bias{i}")))
            x = torch.cat([hidden, low], dim=2)
        predictor = self.module.predictor
        out = F.linear(x.float(), predictor.weight[:, :, 0], predictor.bias)
        return out.transpose(1, 2).contiguous()


def bf16_point_head_wanted() -> bool:
    """PointRend's MLP stays out of int8 (no gain measured there), but on CPUs with native bf16
    it ran about 2.5 times as fast in bf16 (``Bf16PointHead``); tried first, under the same
    agreement guard."""
    from empanada_desktop.backend.cpu import cpu_capability_info

    return cpu_capability_info().native_bf16


def _fallback_order(units: list[str]) -> list[list[str]]:
    """Units to keep in float32, growing, tried in turn until int8 agrees with float32: none
    (the heads' prediction convolutions and the center head are float32 anyway), then the
    semantic and offset heads' hidden blocks (each 18 ms of a 316 ms int8 slice at 512 px in
    float32, 8 ms in int8), then also the decoders'
    fusion and projections, then the rest of the decoders; the encoder is always int8 (it is
    most of the work). Whole heads in int8 are never tried: their outputs came in 256 steps, and
    the center map's plateaus of equal values became extra object centers (147 instead of 106)."""
    heads = [u for u in units if u.split(".")[0] in ("semantic_head", "ins_center", "ins_xy")]
    fuse = [u for u in units if ".fuse." in u or ".project." in u]
    rest = [u for u in units if u != "encoder" and u not in heads and u not in fuse]
    levels: list[list[str]] = []
    for level in ([], heads, heads + fuse, heads + fuse + rest):
        if not levels or len(level) > len(levels[-1]):  # without quantized heads, say, skip a repeat
            levels.append(level)
    return levels


@contextlib.contextmanager
def _no_stack_traces():
    """torch.ao's tracer records a Python stack trace per graph node (for error messages we do
    not show): about 2 s of the first calibration of a session. Off while we trace."""
    import torch.fx.config as fx_config

    previous = fx_config.do_not_emit_stack_traces
    fx_config.do_not_emit_stack_traces = True
    try:
        yield
    finally:
        fx_config.do_not_emit_stack_traces = previous


def _set(model: nn.Module, dotted: str, module: nn.Module) -> None:
    parent, _, name = dotted.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _unit_inputs(model: nn.Module, units: list[str], tile: torch.Tensor, render_steps: int) -> dict[str, tuple]:
    """The positional inputs each unit receives on ``tile`` (example inputs for FX tracing)."""
    seen: dict[str, tuple] = {}
    hooks = [
        model.get_submodule(unit).register_forward_pre_hook(lambda _m, args, unit=unit: seen.setdefault(unit, args))
        for unit in units
    ]
    try:
        with torch.no_grad(), running_model():
            model(tile, render_steps=render_steps, interpolate_ins=False)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _outputs(model: nn.Module, tiles: list[torch.Tensor], render_steps: int, confidence: float,
             labeler: Labeler | None) -> list:
    """Per tile: the label image (``labeler`` given: what the user would get), else the
    foreground mask."""
    answers = []
    with running_model():
        for tile in tiles:
            out = model(tile, render_steps=render_steps, interpolate_ins=False)
            answers.append(labeler(out, tuple(tile.shape[-2:])) if labeler is not None
                           else _foreground(out["sem_logits"], confidence).numpy())
    return answers


def agreement_of(reference: list, answers: list) -> float:
    """min(foreground IoU, F1 of the objects matched at IoU > 0.5) over the tiles: what int8 must
    reach (``MIN_AGREEMENT``) against float32. Label images or foreground masks."""
    from empanada_desktop.core.metrics import panoptic_quality

    ref = np.concatenate([np.asarray(a).ravel() for a in reference])
    new = np.concatenate([np.asarray(a).ravel() for a in answers])
    union = int(np.count_nonzero((ref > 0) | (new > 0)))
    iou = 1.0 if union == 0 else int(np.count_nonzero((ref > 0) & (new > 0))) / union
    if ref.dtype == bool:
        return iou
    objects = [panoptic_quality(b, a) for a, b in zip(reference, answers)]
    tp = sum(o["tp"] for o in objects)
    wrong = sum(o["fp"] + o["fn"] for o in objects)
    f1 = 1.0 if tp + wrong == 0 else tp / (tp + 0.5 * wrong)
    return min(iou, f1)


def quantize(native: nn.Module, tiles: list[torch.Tensor], *, render_steps: int = 2,
             confidence: float = 0.5, labeler: Labeler | None = None, owned: bool = False) -> Int8Model:
    """See ``_quantize``; torch.ao.quantization's deprecation notices are silenced here (the API
    is still in torch 2.14; when it goes, ``for_model`` turns the failure into float32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _quantize(native, tiles, render_steps=render_steps, confidence=confidence, labeler=labeler,
                         owned=owned)


def _quantize(native: nn.Module, tiles: list[torch.Tensor], *, render_steps: int = 2,
              confidence: float = 0.5, labeler: Labeler | None = None, owned: bool = False) -> Int8Model:
    """An int8 copy of the native model ``native`` (unchanged), calibrated on ``tiles``; with
    ``owned`` (a model made for this call, e.g. by ``to_native``) ``native`` itself becomes the
    int8 model, sparing a copy of its weights.

    All units are observed in one calibration pass; then the most int8 that agrees with float32
    on the tiles (``_fallback_order``) is kept.

    Raises:
        Int8Unavailable: no unit could be traced, or even the encoder alone disagrees.
    """
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from empanada_desktop.backend.models.point_rend import StandardPointHead

    started = time.perf_counter()
    model = (native if owned else copy.deepcopy(native)).eval()
    units = quantization_units(model)
    # torch.ao's prepare_fx and convert_fx build new modules and leave the ones they start from
    # as they were (tested), so the float32 units need no copies of their own
    float_units = {unit: model.get_submodule(unit) for unit in units}
    # Example inputs only give FX each unit's call signature (torch.ao's prepare uses their
    # values for standalone modules alone), so a small crop spares a full-size forward (0.9 s
    # of a 5 s calibration on a 512 px slice).
    inputs = _unit_inputs(model, units, tiles[0][..., :EXAMPLE_SIZE, :EXAMPLE_SIZE], render_steps)
    mapping = qconfig_mapping()
    # The encoder's stem (one input channel: little to gain) stays float32: measured on the
    # synthetic benchmark model, it raised agreement from 0.990 to 0.992.
    encoder_mapping = qconfig_mapping().set_module_name("conv1", None).set_module_name("stem", None)
    prepared: dict[str, nn.Module] = {}
    for unit in units:
        if unit not in inputs:  # a part this architecture does not call
            continue
        try:
            with tracing(), _no_stack_traces():
                prepared[unit] = prepare_fx(model.get_submodule(unit), encoder_mapping if unit == "encoder" else mapping,
                                            inputs[unit]).eval()
        except Exception as error:  # noqa: BLE001 - a unit FX cannot trace stays float32
            log.info("int8: %s stays float32 (%s)", unit, str(error).splitlines()[0][:200])
            continue
        _set(model, unit, prepared[unit])
    if not prepared:
        raise Int8Unavailable("no part of this model could be prepared for int8")
    with torch.no_grad():  # observers must see ordinary tensors: under inference_mode they record nothing
        reference = _outputs(model, tiles, render_steps, confidence, labeler)
    converted = {unit: convert_fx(part).eval() for unit, part in prepared.items()}  # observed copies: done
    point_head = "semantic_pr.point_head"  # PointRend's point MLP: 1x1 Conv1d over 8192 points per render step
    float_point_head = getattr(getattr(model, "semantic_pr", None), "point_head", None)
    levels = [(keep_float, False) for keep_float in _fallback_order(list(prepared))]
    if isinstance(float_point_head, StandardPointHead) and bf16_point_head_wanted():
        levels.insert(0, (levels[0][0], True))  # first with PointRend's MLP in bf16, then as before
        bf16_point_head = Bf16PointHead(float_point_head)
    agreement = 0.0
    for keep_float, bf16 in levels:
        for unit in prepared:
            _set(model, unit, float_units[unit] if unit in keep_float else converted[unit])
        if float_point_head is not None:
            _set(model, point_head, bf16_point_head if bf16 else float_point_head)
        with torch.inference_mode():
            agreement = agreement_of(reference, _outputs(model, tiles, render_steps, confidence, labeler))
        log.info("int8 with %s in float32%s: agreement %.4f", keep_float or "nothing",
                 ", PointRend's MLP in bf16" if bf16 else "", agreement)
        if agreement >= MIN_AGREEMENT:
            parts = tuple(unit for unit in prepared if unit not in keep_float) + ((f"{point_head} (bf16)",) if bf16 else ())
            return Int8Model(model, agreement, time.perf_counter() - started, parts)
    raise Int8Unavailable(
        f"int8 and float32 disagree on this image (agreement {agreement:.3f} < {MIN_AGREEMENT} "
        "even with only the encoder in int8); segmenting in float32"
    )


# model -> Int8Model, or the reason it has none; weak, so a model unloaded takes its copy along.
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def forget(model: nn.Module) -> None:
    """Drop the int8 copy (or verdict) kept for ``model``: the next job calibrates again."""
    with _cache_lock:
        _cache.pop(model, None)


def cached(model: nn.Module) -> Int8Model | str | None:
    """The int8 copy (or the reason there is none) made earlier for ``model``, else None."""
    with _cache_lock:
        return _cache.get(model)


def for_model(model: nn.Module, model_config, tiles: list[torch.Tensor], *, render_steps: int = 2,
              confidence: float = 0.5, labeler: Labeler | None = None) -> Int8Model:
    """The int8 copy of ``model`` (TorchScript or native), made on first use and then kept.

    Raises:
        Int8Unavailable: the model has no native architecture, cannot be traced, or disagrees;
            the answer is kept too, so the next call fails at once.
    """
    with _cache_lock:
        known = _cache.get(model)
        if isinstance(known, Int8Model):
            return known
        if isinstance(known, str):
            raise Int8Unavailable(known)
        from empanada_desktop.backend.loading import to_native

        try:
            native = to_native(model, model_config)
            if native is None:
                raise Int8Unavailable(
                    "this model's config names no architecture of ours, so it cannot be rebuilt for int8"
                )
            result = quantize(native.eval(), tiles, render_steps=render_steps, confidence=confidence, labeler=labeler,
                              owned=native is not model)
        except Int8Unavailable as error:
            _cache[model] = str(error)
            raise
        except Exception as error:  # noqa: BLE001 - int8 is an optimisation; float32 always works
            reason = f"int8 preparation failed ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
            _cache[model] = reason
            raise Int8Unavailable(reason) from error
        _cache[model] = result
        log.info("int8 model ready in %.1f s (parts %s; foreground IoU with float32 %.4f)",
                 result.seconds, ", ".join(result.parts), result.agreement)
        return result
