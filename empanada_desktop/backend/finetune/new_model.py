"""A new model to train: built from a ``TrainConfig``, optionally with CEM1.5M encoder weights.

The CEM1.5M weights are the self-supervised (SwAV, 200 epochs) ResNet-50 that empanada-napari's
"Train a model" widget downloads from Zenodo as ``cem1.5m_swav_resnet50_200ep_balanced.pth.tar``
(record 6453160). Here nothing is downloaded: the user imports that file once
(``empanada-desktop train --init cem FILE`` or the wizard) and it is copied into
``<app home>/pretrained/``. The file is a torch checkpoint whose ``state_dict`` holds a
one-channel torchvision-style ResNet-50 (``conv1.weight`` of shape (64, 1, 7, 7), ``bn1.*``,
``layer1..4.*`` with batch norms, an unused ``fc``), possibly prefixed with ``module.`` or
``encoder.``, and whose ``norms`` are the ``[mean, std]`` the encoder was trained with (as
fractions of 255); the new model uses those norms.

Without CEM weights the norms are measured on the training images as empanada-napari does:
the mean over images of each image's mean and standard deviation, divided by 255.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from empanada_desktop.backend.finetune.train_config import (  # noqa: F401 (CEM facts re-exported)
    CEM_FILE_NAME,
    CEM_SOURCE,
    TrainConfig,
    cem_hint,
    imported_cem_path,
)
from empanada_desktop.core.atomic import atomic_path
from empanada_desktop.core.classes import class_pixel_counts, mask_problem
from empanada_desktop.core.errors import ConfigError, DatasetError, ModelLoadError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.model_params import EngineParams, Norms

log = logging.getLogger(__name__)

_DROPPED_PREFIXES = ("fc.", "projection_head.", "prototypes.", "head.")


def read_cem(path: str | Path) -> tuple[dict[str, torch.Tensor], tuple[float, float] | None]:
    """The encoder state dict (ResNet names, no prefix) and the norms of a CEM1.5M file.

    Raises:
        ModelLoadError: the file is missing, unreadable or not a one-channel ResNet-50 checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"CEM weights {path} do not exist. {cem_hint()}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelLoadError(f"{path} cannot be read as a torch checkpoint ({error.__class__.__name__}); "
                             f"it may be truncated. {cem_hint()}") from error
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise ModelLoadError(f"{path} holds no 'state_dict'; it is not the CEM1.5M checkpoint. {cem_hint()}")
    encoder: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        for prefix in ("module.", "encoder."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        if not name.startswith(_DROPPED_PREFIXES) and isinstance(value, torch.Tensor):
            encoder[name] = value
    conv1 = encoder.get("conv1.weight")
    if conv1 is None or tuple(conv1.shape) != (64, 1, 7, 7) or "layer4.2.conv3.weight" not in encoder:
        shape = None if conv1 is None else tuple(conv1.shape)
        raise ModelLoadError(
            f"{path} is not a one-channel ResNet-50 checkpoint (conv1.weight {shape}, expected (64, 1, 7, 7)). {cem_hint()}"
        )
    norms = checkpoint.get("norms") if isinstance(checkpoint, dict) else None
    if norms is not None:
        try:
            norms = (float(norms[0]), float(norms[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            log.warning("ignoring unreadable norms %r in %s", norms, path)
            norms = None
    return encoder, norms


def import_cem(path: str | Path) -> Path:
    """Check a CEM1.5M file and copy it (atomically) into the app home; returns the copy's path."""
    path = Path(path).expanduser()
    read_cem(path)
    target = imported_cem_path()
    if target.exists() and target.resolve() == path.resolve():
        return target
    try:
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    except OSError as error:
        raise ConfigError(f"could not copy {path} to {target}: {error.strerror or error}. Free some disk space "
                          "or check the folder's permissions.") from error
    log.info("imported CEM1.5M weights %s into %s", path, target)
    return target


def cem_file_for(config: TrainConfig) -> Path:
    """The CEM file a run uses: ``config.init_file`` or the imported copy."""
    path = config.init_file if config.init_file is not None else imported_cem_path()
    if not path.is_file():
        raise ModelLoadError(f"no CEM1.5M weights at {path}. {cem_hint()}")
    return path


def build_new_model(config: TrainConfig) -> tuple[torch.nn.Module, ModelConfig]:
    """The native model (unfused batch norms, seeded by ``config.seed``) and its ModelConfig.

    With ``init="cem"`` the encoder gets the CEM1.5M weights, every encoder tensor of them (a
    missing or extra one is an error, unlike empanada's non-strict load); on resume the
    checkpoint replaces all weights, so the CEM file is not needed then.
    """
    from empanada_desktop.backend.models import PADDING_FACTORS, build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.architecture, encoder=config.encoder, num_classes=config.num_classes,
                            ins_decoder=bool(config.thing_list))
    norms = config.norms
    if config.init == "cem" and config.resume is None:
        path = cem_file_for(config)
        weights, cem_norms = read_cem(path)
        result = model.encoder.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelLoadError(
                f"{path} does not match our ResNet-50 encoder (missing {result.missing_keys[:3]}, unexpected "
                f"{result.unexpected_keys[:3]}). {cem_hint()}"
            )
        norms = norms or cem_norms
        log.info("encoder initialised from %s", path)
    engine = EngineParams(label_divisor=config.label_divisor, thing_list=config.thing_list)
    model_config = ModelConfig(
        class_names={c.id: c.name for c in config.classes},
        labels=tuple(c.id for c in config.classes),
        thing_list=config.thing_list,
        model=f"{config.new_name}.pth",
        padding_factor=PADDING_FACTORS[config.architecture],
        norms=Norms(*norms) if norms else Norms(),
        description=config.description_text(config.iterations),
        engine_params=engine,
        weight_gamma=0.0 if config.weight_gamma is None else float(config.weight_gamma),
        architecture=config.architecture,
        encoder=config.encoder,
        dataset_class="SingleClassInstanceDataset" if len(config.classes) == 1 else "PanopticDataset",
        extra={} if norms else {"_norms_from_data": True},
    )
    return model.train(), model_config


def trainable_counts_new(settings: dict) -> dict[str, int]:
    """Trainable parameters of each finetunable-layer choice for a new model's settings."""
    from empanada_desktop.backend.models import build_model
    from empanada_desktop.backend.models.stages import trainable_parameter_counts

    config = TrainConfig(train_dirs=(Path("."),), new_name="count", **settings)
    model = build_model(config.architecture, encoder=config.encoder, num_classes=config.num_classes,
                        ins_decoder=bool(config.thing_list))
    return dict(trainable_parameter_counts(model))


def fit_to_data(config: TrainConfig, model_config: ModelConfig, data) -> tuple[TrainConfig, ModelConfig, str]:
    """Check the masks against the classes and, without known norms, measure them on the data.

    Returns the config with its norms fixed (so a resumed run uses the same ones), the
    ModelConfig to train with and a one-line report of the pixels per class.

    Raises:
        DatasetError: a mask value that matches no class (naming the file).
    """
    for index, mask in enumerate(data.masks):
        problem = mask_problem(mask, config.classes, config.label_divisor)
        if problem:
            raise DatasetError(f"mask {_mask_file(config, index)} {problem}. Fix the mask or the classes.")
    counts = class_pixel_counts(data.masks, config.classes, config.label_divisor)
    report = "Pixels per class: " + ", ".join(f"{c.name} {counts[c.id]:,}" for c in config.classes) + "."
    empty = [c.name for c in config.classes if counts[c.id] == 0]
    if empty:
        report += f" No pixel of {', '.join(empty)} in the training masks: check the classes and label divisor."
    extra = dict(model_config.extra)
    if extra.pop("_norms_from_data", False):
        means = [float(np.mean(image)) for image in data.images]
        stds = [float(np.std(image)) for image in data.images]
        norms = Norms(round(float(np.mean(means)) / 255, 5), round(max(float(np.mean(stds)) / 255, 1e-3), 5))
        model_config = _replace(model_config, norms=norms, extra=extra)
        report += f" Norms measured on the training images: mean {norms.mean}, std {norms.std}."
    norms = model_config.norms
    return config.replace(norms=(float(norms.mean), float(norms.std))), model_config, report


def _replace(model_config: ModelConfig, **changes) -> ModelConfig:
    import dataclasses

    return dataclasses.replace(model_config, **changes)


def _mask_file(config: TrainConfig, index: int) -> str:
    """The file of the ``index``-th pair, in the order ``data.read_roots`` reads them."""
    from empanada_desktop.core.dataset import validate_roots

    pairs = [pair for pairs in validate_roots(config.train_dirs).sources.values() for pair in pairs]
    return str(pairs[index].mask) if index < len(pairs) else f"number {index + 1}"
