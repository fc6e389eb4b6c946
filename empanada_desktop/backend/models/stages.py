"""Which parameters belong to which encoder stage, and freezing by stage.

The map is derived from parameter names, so it works the same on native models and on
TorchScript files from empanada: ``encoder.conv1`` / ``encoder.bn1`` (ResNet) or
``encoder.stem`` (RegNet) is the stem, ``encoder.layerN`` (ResNet) or ``encoder.stageN`` (RegNet)
is stage N, everything outside the encoder is ``decoder_and_heads`` and always trains.

empanada's own finetuning matched the substring ``encoder.stageN``, which never matches a ResNet,
so on MitoNet "stage4" trained exactly what "none" trained (docs/EMPANADA_FORMATS.md section 3). Here
``layerN`` is ``stageN``.
"""

from __future__ import annotations

import logging
import re

from torch import nn

from empanada_desktop.core.finetunable_layers import ENCODER_STAGES, LAYER_CHOICES, check_layers

log = logging.getLogger(__name__)

STAGES = ("stem", *ENCODER_STAGES)
DECODER_AND_HEADS = "decoder_and_heads"

_BATCHNORM_NAMES = frozenset({"BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm"})
# Encoder-relative names: what follows "encoder." in a parameter's full name.
_STEM = re.compile(r"^(conv1|bn1|stem)(\.|$)")
_STAGE = re.compile(r"^(?:layer|stage)([1-4])(\.|$)")


def _encoder_prefix(names: list[str]) -> str | None:
    """The module path of the encoder (``"encoder."`` usually; wrapped models add a prefix)."""
    candidates = {name[: match.end()] for name in names if (match := re.search(r"(^|\.)encoder\.", name))}
    if not candidates:
        return None
    return min(candidates, key=len)


def classify(name: str, encoder_prefix: str | None) -> str:
    """The stage ("stem", "stage1".."stage4") or ``decoder_and_heads`` of a parameter or module."""
    if encoder_prefix is None or not name.startswith(encoder_prefix):
        return DECODER_AND_HEADS
    relative = name[len(encoder_prefix):]
    if _STEM.match(relative):
        return "stem"
    match = _STAGE.match(relative)
    if match:
        return f"stage{match.group(1)}"
    # Anything else inside the encoder (e.g. a classifier left in a backbone) is deepest.
    log.debug("encoder parameter %s is not in a known stage; counted with stage4", name)
    return "stage4"


def stage_map(model: nn.Module) -> dict[str, list[str]]:
    """Parameter names per stage: keys ``stem, stage1..stage4, decoder_and_heads``.

    Every parameter appears exactly once (shared parameters under their first name).
    """
    names = [name for name, _ in model.named_parameters()]
    prefix = _encoder_prefix(names)
    mapping: dict[str, list[str]] = {key: [] for key in (*STAGES, DECODER_AND_HEADS)}
    for name in names:
        mapping[classify(name, prefix)].append(name)
    return mapping


def trainable_stages(layers: str) -> tuple[str, ...]:
    """Stages that train for a finetunable-layers choice ("stageK" = stage K and all later)."""
    check_layers(layers)
    if layers == "none":
        return ()
    if layers == "all":
        return STAGES
    return ENCODER_STAGES[ENCODER_STAGES.index(layers):]


def set_finetunable(model: nn.Module, layers: str) -> int:
    """Set ``requires_grad`` by stage for ``layers`` (one of ``LAYER_CHOICES``).

    Decoders and heads always train. Returns the number of trainable parameter values.
    Call ``freeze_batchnorm_eval(model)`` after every ``model.train()``.
    """
    training = set(trainable_stages(layers)) | {DECODER_AND_HEADS}
    trainable = 0
    prefix = _encoder_prefix([name for name, _ in model.named_parameters()])
    for name, parameter in model.named_parameters():
        wanted = classify(name, prefix) in training
        parameter.requires_grad_(wanted)
        if wanted:
            trainable += parameter.numel()
    return trainable


def trainable_parameter_counts(model: nn.Module) -> dict[str, int]:
    """Trainable parameter values for each choice of ``LAYER_CHOICES`` (model unchanged)."""
    sizes = {key: 0 for key in (*STAGES, DECODER_AND_HEADS)}
    prefix = _encoder_prefix([name for name, _ in model.named_parameters()])
    for name, parameter in model.named_parameters():
        sizes[classify(name, prefix)] += parameter.numel()
    return {
        layers: sizes[DECODER_AND_HEADS] + sum(sizes[stage] for stage in trainable_stages(layers))
        for layers in LAYER_CHOICES
    }


def _is_batchnorm(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    # Submodules of a TorchScript model are RecursiveScriptModules; they keep the class name.
    return getattr(module, "original_name", None) in _BATCHNORM_NAMES


def freeze_batchnorm_eval(model: nn.Module) -> int:
    """Put BatchNorm layers whose parameters are all frozen into eval mode.

    Frozen layers then use, and keep, their running statistics instead of the batch's. Works
    for native and TorchScript models. Returns how many layers were switched.
    """
    switched = 0
    for _, module in model.named_modules():
        if not _is_batchnorm(module):
            continue
        parameters = list(module.parameters(recurse=False))
        if parameters and not any(p.requires_grad for p in parameters):
            module.train(False)
            switched += 1
    return switched
