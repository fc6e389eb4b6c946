"""Registered models as torch modules, and native models made into registered ones.

``load_registered`` is how every other part gets a model by name. ``register_native_model``
builds one of our architectures with seeded random weights, scripts it and registers it in the
app home: the way tests and the demo get a small, real, empanada-format model without any
download.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path

import torch
from torch import nn

from empanada_desktop.backend.models import PADDING_FACTORS, build_model, build_model_for_weights
from empanada_desktop.backend.torchscript import load_model, script_model, verify_model_file
from empanada_desktop.core.errors import ModelLoadError, UserError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.registry import ModelRegistry, RegisteredModel

log = logging.getLogger(__name__)


def load_registered(
    name_or_registered: str | RegisteredModel, device: str | torch.device = "cpu"
) -> tuple[torch.jit.ScriptModule, ModelConfig]:
    """Load a registered model (TorchScript, eval mode) onto ``device`` with its config.

    Raises:
        RegistryError: unknown name (the message lists the known ones).
        ModelLoadError: the weights are not installed (the message names the file to import)
            or the file does not load.
    """
    if isinstance(name_or_registered, RegisteredModel):
        registered = name_or_registered
    else:
        registered = ModelRegistry().get(name_or_registered)
    if not registered.installed or registered.weights_path is None:
        raise ModelLoadError(
            f"Model '{registered.name}' has no weights on this computer. {registered.missing_weights_hint}"
        )
    return load_model(registered.weights_path, device), registered.config


def architecture_of(config: ModelConfig) -> tuple[str, str]:
    """The native (architecture, encoder) for a config; guessed from the padding if unstated."""
    architecture = config.architecture
    if architecture is None:
        architecture = "PanopticBiFPNPR" if config.padding_factor % 128 == 0 else "PanopticDeepLabPR"
        log.info("config does not name its architecture; using %s", architecture)
    return architecture, config.encoder or "resnet50"


def _seeded_model(architecture: str, encoder: str, num_classes: int, seed: int, **kwargs) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(architecture, encoder=encoder, num_classes=num_classes, **kwargs)
    return model.eval()


def create_builtin_weights(name: str, seed: int = 0, *, fused_encoder: bool = True) -> nn.Module:
    """The native architecture of built-in (or any registered) config ``name``, random weights.

    With ``fused_encoder=True`` it has the batch-norm-fused encoder of empanada's released files,
    so its scripted form has their structure and parameter names. For tests and demos.
    """
    config = ModelRegistry().get(name).config
    architecture, encoder = architecture_of(config)
    return _seeded_model(architecture, encoder, config.num_classes, seed, fused_encoder=fused_encoder)


def register_native_model(
    name: str,
    *,
    architecture: str = "PanopticDeepLabPR",
    encoder: str = "resnet18",
    like: str = "MitoNet_v1",
    seed: int = 0,
) -> RegisteredModel:
    """Build ``architecture``/``encoder`` with seeded random weights, script and register it.

    The config (classes, norms, finetuning parameters) is copied from the model ``like``; the
    architecture, encoder and padding factor are this model's. Returns the registry entry.
    """
    registry = ModelRegistry()
    base = registry.get(like).config
    model = _seeded_model(architecture, encoder, base.num_classes, seed)
    config = dataclasses.replace(
        base,
        architecture=architecture,
        encoder=encoder,
        padding_factor=PADDING_FACTORS[architecture],
        description=(
            f"{architecture} with a {encoder} encoder and random weights (seed {seed}), configured "
            f"like {like}. Made for tests and demos; it does not segment anything yet."
        ),
    )
    with tempfile.TemporaryDirectory(prefix="native-model-") as folder:
        weights = Path(folder) / f"{name}.pth"
        script_model(model).save(str(weights))
        return registry.register(name, config, weights, copy=True, verify=verify_model_file)


def to_native(model: torch.nn.Module, model_config: object) -> torch.nn.Module | None:
    """The native module with ``model``'s weights, or None when it would not compute the same.

    Finetuning trains it (faster than the TorchScript module) and int8 inference traces it with
    torch.fx. The config must name the architecture; every key must load (strict); each
    convolution takes its stride, padding and dilation from the file (files made by other
    versions of the architecture code may differ there); and the two must give the same outputs
    on a probe input, else None.
    """
    if not isinstance(model, torch.jit.ScriptModule):
        return model
    architecture = getattr(model_config, "architecture", None)
    if not architecture:
        return None
    state = model.state_dict()
    fused = any(key.startswith("encoder.conv1.0.") for key in state)
    try:
        native = build_model_for_weights(  # no random initialisation: the strict load fills every tensor
            architecture,
            encoder=getattr(model_config, "encoder", None) or "resnet50",
            num_classes=int(getattr(model_config, "num_classes", 1)),
            fused_encoder=fused,
        )
        native.load_state_dict(state, strict=True)
        _copy_conv_geometry(model, native)
        difference = _probe_difference(model, native.eval(), int(getattr(model_config, "padding_factor", 16)))
    except (UserError, RuntimeError, TypeError, ValueError, AttributeError) as error:
        log.info("no native module for this TorchScript model (%s)", str(error).splitlines()[0])
        return None
    if difference > 1e-3:
        log.info("no native module for this TorchScript model: outputs differ by %.3g on a probe", difference)
        return None
    log.info("native %s module with the TorchScript weights", architecture)
    return native


def _copy_conv_geometry(scripted: torch.nn.Module, native: torch.nn.Module) -> None:
    """Stride, padding, dilation and groups of every convolution, from the file's modules."""
    scripted_modules = dict(scripted.named_modules())
    for name, module in native.named_modules():
        if isinstance(module, nn.Conv2d) and name in scripted_modules:
            source = scripted_modules[name]
            for attribute in ("stride", "padding", "dilation", "groups"):
                value = getattr(source, attribute, None)
                if value is not None:
                    setattr(module, attribute, tuple(value) if isinstance(value, list | tuple) else value)


def _probe_difference(scripted: torch.nn.Module, native: torch.nn.Module, padding_factor: int) -> float:
    """Largest absolute difference of the two models' outputs on a seeded random input."""
    side = max(64, padding_factor)
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, 1, side, side, generator=generator)
    was_training = scripted.training
    scripted.eval()
    try:
        with torch.no_grad():
            a = scripted(probe, render_steps=1, interpolate_ins=False)
            b = native(probe, render_steps=1, interpolate_ins=False)
    finally:
        scripted.train(was_training)
    worst = 0.0
    for key in ("sem_logits", "ctr_hmp", "offsets"):
        scale = float(a[key].abs().max()) + 1e-6
        worst = max(worst, float((a[key] - b[key]).abs().max()) / scale)
    return worst
