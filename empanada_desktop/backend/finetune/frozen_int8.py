"""Frozen encoder stages in int8 while finetuning on a CPU.

Stages that do not train only run forward, like inference, so they can run in int8 kernels
(several times the float32 throughput; docs/CPU_SPEED.md). They are quantized once when the run
starts (``backend/inference/int8.py``'s recipe, calibrated on the images of step 1's batch, so a
resumed run gets the same int8 stages), and their int8 forward is swapped in for the training
steps only: validation, the health monitor, checkpoints and the exported model all see the
float32 weights, which never change (they are frozen).

Guard: each quantized stage's output must match float32's on the calibration images (cosine
similarity at least ``MIN_COSINE``); otherwise the run stays in float32 and says so.

``FinetuneConfig.frozen_int8``: "auto" (on a CPU, when some stage is frozen, training in float32,
or in bf16 where ``int8_beats_bf16``), "on" (also next to bf16 elsewhere), "off".
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from empanada_desktop.backend.inference import int8
from empanada_desktop.backend.models.stages import ENCODER_STAGES, trainable_stages

log = logging.getLogger(__name__)

FROZEN_INT8_CHOICES = ("auto", "on", "off")
MIN_COSINE = 0.99
CALIBRATION_IMAGES = 8
_STAGE_NAMES = {f"layer{k}": f"stage{k}" for k in range(1, 5)} | {f"stage{k}": f"stage{k}" for k in range(1, 5)}


def frozen_units(model: nn.Module, layers: str) -> list[str]:
    """The modules that run in int8 for ``layers``: the whole encoder when it is all frozen
    ("none"; its stem stays float32 inside), else each frozen stage before the first trainable
    one (stage modules ``encoder.layerN`` / ``encoder.stageN``)."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        return []
    training = set(trainable_stages(layers))
    if not training:
        return ["encoder"]
    if "stem" in training:
        return []
    return [f"encoder.{name}" for name, _ in encoder.named_children()
            if _STAGE_NAMES.get(name) in ENCODER_STAGES and _STAGE_NAMES[name] not in training]


def wanted(choice: str, device: torch.device, precision_name: str, units: list[str]) -> bool:
    if choice == "off" or not units or int8.unavailable_reason(device) is not None:
        return False
    return choice == "on" or precision_name == "fp32" or (precision_name == "bf16" and int8_beats_bf16())


def int8_beats_bf16() -> bool:
    """Whether frozen stages run faster in int8 than in bf16 here: they do wherever the CPU has
    8-bit dot products. MitoNet_v1, layers none, batch 16 at 256 px, bare steps: AVX-512 BF16
    with VNNI 4.03 against 4.36 s; AMX (2-core Intel Xeon) 1.95-1.99 against 2.10-2.20 s.
    Not without VNNI, where activations lose a bit."""
    return int8.full_range_activations()


class FrozenInt8:
    """Quantized copies of frozen modules; ``active(model)`` swaps their forwards in."""

    def __init__(self, units: dict[str, nn.Module], cosine: float, seconds: float):
        self.units = units
        self.cosine = cosine
        self.seconds = seconds

    @contextlib.contextmanager
    def active(self, model: nn.Module) -> Iterator[None]:
        modules = [(model.get_submodule(name), quantized) for name, quantized in self.units.items()]
        for module, quantized in modules:
            module.forward = _float_out(quantized)  # an instance attribute: state_dict unchanged
        try:
            yield
        finally:
            for module, _ in modules:
                del module.forward

    def note(self) -> str:
        return (f"Frozen layers run in int8 ({', '.join(self.units)}; prepared in {self.seconds:.1f} s, "
                f"output cosine similarity with float32 {self.cosine:.4f}).")


def _float_out(quantized: nn.Module):
    def forward(*args):
        with torch.autocast("cpu", enabled=False), torch.no_grad():
            args = tuple(a.float() if isinstance(a, torch.Tensor) else a for a in args)
            return quantized(*args)

    return forward


def build(model: nn.Module, units: list[str], images: torch.Tensor) -> FrozenInt8:
    """Quantize ``units`` of ``model`` (unchanged) on ``images`` (N, 1, H, W), normalised.

    Raises:
        int8.Int8Unavailable: the model is TorchScript, a unit cannot be traced, or its int8
            output is too far from float32.
    """
    if isinstance(model, torch.jit.ScriptModule):
        # A file whose config names no architecture that rebuilds it trains as TorchScript
        # (loading.to_native); torch.fx cannot trace that.
        raise int8.Int8Unavailable("this model trains as TorchScript (no native module for its config), "
                                   "which cannot be traced for int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return _build(model, units, images[:CALIBRATION_IMAGES])


def _build(model: nn.Module, units: list[str], images: torch.Tensor) -> FrozenInt8:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    started = time.perf_counter()
    probe = copy.deepcopy(model).eval()
    inputs: dict[str, tuple] = {}
    hooks = [probe.get_submodule(unit).register_forward_pre_hook(
        lambda _m, args, unit=unit: inputs.setdefault(unit, args)) for unit in units]
    try:
        with torch.no_grad(), int8.running_model():
            probe.encoder(images)
    finally:
        for hook in hooks:
            hook.remove()
    quantized: dict[str, nn.Module] = {}
    worst = 1.0
    for unit in units:
        original = probe.get_submodule(unit)
        mapping = int8.qconfig_mapping()
        if unit == "encoder":
            mapping = mapping.set_module_name("conv1", None).set_module_name("stem", None)
        try:
            with int8.tracing():
                prepared = prepare_fx(copy.deepcopy(original).eval(), mapping, inputs[unit]).eval()
            with torch.no_grad(), int8.running_model():
                prepared(*inputs[unit])
            converted = convert_fx(prepared).eval()
            with torch.no_grad(), int8.running_model():
                reference, output = original(*inputs[unit]), converted(*inputs[unit])
        except Exception as error:  # noqa: BLE001 - int8 is an optimisation; float32 always works
            raise int8.Int8Unavailable(f"{unit} could not be prepared for int8 ({str(error).splitlines()[0][:200]})") from error
        pairs = zip(reference, output) if isinstance(reference, list | tuple) else [(reference, output)]
        for a, b in pairs:
            worst = min(worst, float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)))
        quantized[unit] = converted
    if worst < MIN_COSINE:
        raise int8.Int8Unavailable(
            f"int8 frozen layers differ from float32 (cosine similarity {worst:.4f} < {MIN_COSINE}); training in float32"
        )
    return FrozenInt8(quantized, worst, time.perf_counter() - started)
