"""Everything a run needs before its first step, each check failing with a message users can act on."""

from __future__ import annotations

import dataclasses
import logging

import torch

from empanada_desktop.backend.finetune.config import FinetuneConfig, nearest_valid_sizes
from empanada_desktop.core.errors import ConfigError, DatasetError, UserError

log = logging.getLogger(__name__)


def load_base_model(name: str) -> tuple[torch.nn.Module, object]:
    """The registered model (on the CPU) and its ModelConfig, ready to train.

    A TorchScript model whose config names a native architecture is converted to the native
    (eager) module when its state dict loads with no missing or unexpected key. Measured on the
    team's shared 2-core CPU (MitoNet_v1 architecture, batch 4, 256 px, bf16 autocast, one
    training step): 4-5 s eager against 6-7 s for the TorchScript module under the same load. Otherwise the TorchScript module itself is trained, as empanada does.
    """
    from empanada_desktop.backend.loading import load_registered, to_native

    model, model_config = load_registered(name, device="cpu")
    native = to_native(model, model_config)
    return (native if native is not None else model), model_config


def load_start_model(config: FinetuneConfig) -> tuple[torch.nn.Module, object]:
    """What a run trains: a new model for a ``TrainConfig``, else the registered base model."""
    if getattr(config, "SECTION", "finetune") == "train":
        from empanada_desktop.backend.finetune.new_model import build_new_model

        return build_new_model(config)
    return load_base_model(config.model)


def fit_to_data(config: FinetuneConfig, model_config: object, data) -> tuple[FinetuneConfig, object, list[str]]:
    """Per-source counts, shares and epochs for every run; for a new model also the class check
    against the masks and the norms (``new_model.fit_to_data``). Returns config, model config and
    the lines to show."""
    from empanada_desktop.backend.finetune.data import source_shares

    gamma = config.weight_gamma if config.weight_gamma is not None else float(getattr(model_config, "weight_gamma", 0.0))
    counts: dict[str, int] = {}
    for source in data.sources:
        counts[source] = counts.get(source, 0) + 1
    shares = source_shares(data.sources, gamma)
    drawn = config.iterations * config.batch_size
    lines = [
        f"{len(counts)} source(s), weight_gamma {gamma:g}: "
        + ", ".join(f"{name} {count} (share {shares[name]:.2f})" for name, count in counts.items())
        + f". {config.iterations} iterations x batch {config.batch_size} = {drawn:,} patches drawn, "
        f"{drawn / max(1, len(data)):.1f} epochs of {len(data)} patches."
    ]
    if getattr(config, "SECTION", "finetune") == "train":
        from empanada_desktop.backend.finetune.new_model import fit_to_data as fit_new

        config, model_config, report = fit_new(config, model_config, data)
        lines.append(report)
    return config, model_config, lines


def trainable_counts(model_name: str) -> dict[str, int]:
    """Trainable parameters of each finetunable-layer choice for a registered model, loaded as
    finetuning loads it (``stages.trainable_parameter_counts`` does the counting)."""
    from empanada_desktop.backend.models.stages import trainable_parameter_counts

    model, _ = load_base_model(model_name)
    return dict(trainable_parameter_counts(model))


def check_patch_size(config: FinetuneConfig, padding_factor: int) -> None:
    if config.patch_size % padding_factor:
        below, above = nearest_valid_sizes(config.patch_size, padding_factor)
        raise ConfigError(
            f"patch size {config.patch_size} is not divisible by {padding_factor}, which model "
            f"{config.model} needs; use {below} or {above}."
        )


def check_batch_size(config: FinetuneConfig, n_images: int) -> None:
    from empanada_desktop.backend import distributed

    distributed.check_batch_size(config.batch_size)
    if n_images >= config.batch_size or config.duplicate_patches:
        return
    raise DatasetError(
        f"the training folders hold {n_images} image(s), fewer than the batch size "
        f"{config.batch_size}. Either: (1) lower the batch size to {n_images} or less (below 16 the "
        "model's BatchNorm statistics get less stable, so results may be noisier); (2) allow "
        "duplicate patches (--duplicate-patches: each batch repeats differently augmented "
        "patches); or (3) add more labelled patches (related CEM-MitoLab data helps)."
    )


def check_new_name_free(name: str) -> None:
    """Refuse, before any training, a name a model already has (in any letter case)."""
    from empanada_desktop.core.registry import ModelRegistry

    taken = next((model.name for model in ModelRegistry().list() if model.name.casefold() == name.casefold()), None)
    if taken is not None:
        raise ConfigError(
            f"a model named {taken!r} is already registered; choose another name for the "
            "finetuned model, or remove the old one in the model manager first."
        )


def resolve_device(choice: str) -> torch.device:
    """The device of ``choice``; under torchrun each process takes the GPU of its local rank."""
    from empanada_desktop.backend import distributed
    from empanada_desktop.backend.devices import resolve_device as resolve

    return distributed.local_device(resolve(choice))


def with_description(model_config: object, config: FinetuneConfig, steps: int) -> object:
    describe = getattr(config, "description_text", None)
    text = describe(steps) if describe is not None else (
        f"Finetuned from {config.model} with empanada-desktop: {steps} iterations, layers "
        f"{config.layers}, batch {config.batch_size}, patch {config.patch_size} px, "
        f"data {', '.join(str(d) for d in config.train_dirs)}."
    )
    try:
        return dataclasses.replace(model_config, description=text)
    except (TypeError, ValueError):
        return model_config


def out_of_memory_error(config: FinetuneConfig, device: torch.device) -> UserError:
    where = "GPU" if device.type in ("cuda", "mps") else "computer"
    smaller_patch = max(64, config.patch_size // 2)
    return UserError(
        f"the {where} ran out of memory at batch size {config.batch_size} and patch size "
        f"{config.patch_size}. Lower the batch size (e.g. {max(1, config.batch_size // 2)}) or the "
        f"patch size (e.g. {smaller_patch}), or choose layers 'none' (frozen encoder needs less memory)."
    )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
