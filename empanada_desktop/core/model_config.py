"""A model's config: empanada's YAML schema (docs/EMPANADA_FORMATS.md section 2) as a typed value.

Code reads ``config.padding_factor`` or ``config.engine_params.label_divisor``; the nested
``FINETUNE:`` layout of empanada's YAML exists only in :meth:`ModelConfig.from_dict` and
:meth:`ModelConfig.to_dict`. Keys this schema does not know are kept in ``extra`` so that a
config read from empanada and written back loses nothing.

Two keys are our extension: ``architecture`` (``PanopticDeepLabPR`` or ``PanopticBiFPNPR``) and
``encoder`` (``resnet50`` ...). empanada ignores keys it does not use.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.model_params import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    CriterionParams,
    EngineParams,
    Norms,
    int_tuple,
    integer,
    mapping,
    number,
    where,
)

__all__ = ["DEFAULT_MEAN", "DEFAULT_STD", "CriterionParams", "EngineParams", "ModelConfig", "Norms"]

# Top-level keys handled by ModelConfig itself; everything else goes to ``extra``.
_TOP_KEYS = (
    "class_names",
    "labels",
    "thing_list",
    "model",
    "model_quantized",
    "padding_factor",
    "norms",
    "description",
    "FINETUNE",
    "architecture",
    "encoder",
)
_FINETUNE_KEYS = (
    "criterion",
    "criterion_params",
    "dataset_class",
    "dataset_params",
    "engine",
    "engine_params",
)


@dataclass(frozen=True)
class ModelConfig:
    """One model's config; see the module docstring. Validated on construction."""

    class_names: dict[int, str]
    labels: tuple[int, ...]
    thing_list: tuple[int, ...]
    model: str
    model_quantized: str | None = None
    padding_factor: int = 16
    norms: Norms = field(default_factory=Norms)
    description: str = ""
    engine_params: EngineParams = field(default_factory=EngineParams)
    criterion_params: CriterionParams = field(default_factory=CriterionParams)
    weight_gamma: float = 0.7
    architecture: str | None = None
    encoder: str | None = None
    criterion: str = "PanopticLoss"
    dataset_class: str = "SingleClassInstanceDataset"
    engine: str = "PanopticDeepLabEngine"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._validate(None)

    # -- validation ---------------------------------------------------------------------------

    def _validate(self, source: str | None) -> None:
        if not isinstance(self.class_names, dict) or not self.class_names:
            raise ConfigError(
                f"Field 'class_names'{where(source)} must map class ids to names, e.g. {{1: mito}}."
            )
        names: dict[int, str] = {}
        for key, value in self.class_names.items():
            class_id = integer(key, f"class_names key {key!r}", source, minimum=1)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"Field 'class_names'{where(source)}: class {class_id} needs a non-empty name."
                )
            names[class_id] = value
        object.__setattr__(self, "class_names", names)
        labels = int_tuple(list(self.labels), "labels", source)
        things = int_tuple(list(self.thing_list), "thing_list", source)
        if not labels:
            raise ConfigError(f"Field 'labels'{where(source)} must list at least one class id, e.g. [1].")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"Field 'labels'{where(source)} lists a class id twice: {list(labels)}.")
        unnamed = [label for label in labels if label not in names]
        if unnamed:
            raise ConfigError(
                f"Field 'labels'{where(source)} has class ids {unnamed} without a name in 'class_names'."
            )
        stray = [thing for thing in things if thing not in labels]
        if stray:
            raise ConfigError(
                f"Field 'thing_list'{where(source)} has class ids {stray} that are not in 'labels' "
                f"{list(labels)}."
            )
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "thing_list", things)
        if not isinstance(self.model, str | os.PathLike) or not str(self.model).strip():
            raise ConfigError(
                f"Field 'model'{where(source)} must be the path or URL of a TorchScript .pth file."
            )
        object.__setattr__(self, "model", str(self.model))
        if self.model_quantized is not None:
            object.__setattr__(self, "model_quantized", str(self.model_quantized))
        padding = integer(self.padding_factor, "padding_factor", source, minimum=1)
        object.__setattr__(self, "padding_factor", padding)
        if not isinstance(self.norms, Norms):
            raise ConfigError(f"Field 'norms'{where(source)} must have 'mean' and 'std'.")
        if self.description is None:
            object.__setattr__(self, "description", "")
        object.__setattr__(self, "description", str(self.description))
        gamma = number(self.weight_gamma, "FINETUNE.dataset_params.weight_gamma", source)
        if gamma < 0:
            raise ConfigError(
                f"Field 'FINETUNE.dataset_params.weight_gamma'{where(source)} must not be negative, "
                f"got {gamma}."
            )
        object.__setattr__(self, "weight_gamma", gamma)
        for name in ("architecture", "encoder"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"Field '{name}'{where(source)} must be a name such as 'resnet50'.")
        if not isinstance(self.extra, dict):
            raise ConfigError("ModelConfig.extra must be a dict")

    # -- derived ------------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        """Output channels of the semantic head: 1 for a single class (sigmoid), else one per class
        plus the background channel 0 (softmax; empanada-napari's training uses ``n + 1``)."""
        return 1 if len(self.labels) == 1 else len(self.labels) + 1

    @property
    def is_instance(self) -> bool:
        """True when at least one class is an instance ("thing") class."""
        return bool(self.thing_list)

    def with_model_path(self, path: str | os.PathLike[str], quantized: str | None = None) -> ModelConfig:
        """A copy whose ``model:`` is ``path`` and ``model_quantized:`` is ``quantized``."""
        return replace(self, model=str(path), model_quantized=quantized)

    # -- YAML at the edge ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | None = None) -> ModelConfig:
        """Build from empanada's YAML structure; ``source`` (a file name) goes into error messages."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"Model config{where(source)} must be a YAML mapping with class_names, labels, model, ..."
            )
        for required in ("class_names", "labels", "model"):
            if data.get(required) in (None, "", [], {}):
                raise ConfigError(
                    f"Model config{where(source)} lacks the field '{required}'; compare with an "
                    "empanada config such as MitoNet_v1.yaml."
                )
        finetune = mapping(data.get("FINETUNE"), "FINETUNE", source)
        norms_data = mapping(data.get("norms"), "norms", source)
        engine_data = dict(mapping(finetune.get("engine_params"), "FINETUNE.engine_params", source))
        criterion_data = mapping(finetune.get("criterion_params"), "FINETUNE.criterion_params", source)
        dataset_params = dict(mapping(finetune.get("dataset_params"), "FINETUNE.dataset_params", source))
        labels = data.get("labels")
        thing_list = data.get("thing_list", engine_data.get("thing_list", labels))
        extra = {key: copy.deepcopy(value) for key, value in data.items() if key not in _TOP_KEYS}
        finetune_extra = {k: copy.deepcopy(v) for k, v in finetune.items() if k not in _FINETUNE_KEYS}
        gamma = dataset_params.pop("weight_gamma", 0.7)
        # Unknown keys inside the FINETUNE blocks are kept for the round trip, not validated.
        for block, block_data, cls_ in (
            ("dataset_params", dataset_params, None),
            ("engine_params", engine_data, EngineParams),
            ("criterion_params", criterion_data, CriterionParams),
        ):
            known = () if cls_ is None else cls_.__dataclass_fields__
            unknown = {k: copy.deepcopy(v) for k, v in block_data.items() if k not in known}
            if unknown:
                finetune_extra[block] = unknown
        if finetune_extra:
            extra["FINETUNE"] = finetune_extra
        engine_data.setdefault("thing_list", thing_list)
        try:
            return cls(
                class_names=mapping(data["class_names"], "class_names", source),
                labels=int_tuple(labels, "labels", source),
                thing_list=int_tuple(thing_list, "thing_list", source),
                model=data["model"],
                model_quantized=data.get("model_quantized") or None,
                padding_factor=data.get("padding_factor", 16),
                norms=Norms(**_norms(norms_data, source)),
                description=str(data.get("description") or "").strip(),
                engine_params=EngineParams(**_known(engine_data, EngineParams)),
                criterion_params=CriterionParams(**_known(criterion_data, CriterionParams)),
                weight_gamma=gamma,
                architecture=data.get("architecture"),
                encoder=data.get("encoder"),
                criterion=str(finetune.get("criterion", "PanopticLoss")),
                dataset_class=str(finetune.get("dataset_class", "SingleClassInstanceDataset")),
                engine=str(finetune.get("engine", "PanopticDeepLabEngine")),
                extra=extra,
            )._revalidated(source)
        except ConfigError as error:
            message = str(error)
            if source and source not in message:
                message = message.rstrip(".") + f" (in {source})."
            raise ConfigError(message) from None

    def _revalidated(self, source: str | None) -> ModelConfig:
        self._validate(source)
        return self

    def to_dict(self) -> dict[str, Any]:
        """empanada's YAML structure (plain Python types, ready for ``yaml.safe_dump``)."""
        finetune_extra = copy.deepcopy(dict(self.extra.get("FINETUNE", {})))
        dataset_params = dict(finetune_extra.pop("dataset_params", {}))
        dataset_params["weight_gamma"] = self.weight_gamma
        engine_extra = finetune_extra.pop("engine_params", {})
        criterion_extra = finetune_extra.pop("criterion_params", {})
        engine = self.engine_params
        data: dict[str, Any] = {
            "class_names": dict(self.class_names),
            "labels": list(self.labels),
            "thing_list": list(self.thing_list),
            "model": self.model,
            "model_quantized": self.model_quantized,
            "padding_factor": self.padding_factor,
            "norms": {"mean": self.norms.mean, "std": self.norms.std},
            "description": self.description,
        }
        if self.architecture is not None:
            data["architecture"] = self.architecture
        if self.encoder is not None:
            data["encoder"] = self.encoder
        data["FINETUNE"] = {
            "criterion": self.criterion,
            "criterion_params": {
                "ce_weight": self.criterion_params.ce_weight,
                "mse_weight": self.criterion_params.mse_weight,
                "l1_weight": self.criterion_params.l1_weight,
                "pr_weight": self.criterion_params.pr_weight,
                "top_k_percent": self.criterion_params.top_k_percent,
                **criterion_extra,
            },
            "dataset_class": self.dataset_class,
            "dataset_params": dataset_params,
            "engine": self.engine,
            "engine_params": {
                "confidence_thr": engine.confidence_thr,
                "label_divisor": engine.label_divisor,
                "nms_kernel": engine.nms_kernel,
                "nms_threshold": engine.nms_threshold,
                "stuff_area": engine.stuff_area,
                "thing_list": list(engine.thing_list),
                "void_label": engine.void_label,
                **engine_extra,
            },
            **finetune_extra,
        }
        for key, value in self.extra.items():
            if key != "FINETUNE":
                data[key] = copy.deepcopy(value)
        return data

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ModelConfig:
        """Read an empanada model config; problems raise ConfigError naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"Model config {path} does not exist; check the path.") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"Model config {path} cannot be read ({error}).") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"Model config {path} is not valid YAML: {error}") from None
        return cls.from_dict(data, source=str(path))

    def to_yaml(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as empanada YAML, atomically; returns the path."""
        path = Path(path)
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))
        return path


def _known(data: dict, cls: type) -> dict:
    """The keys of ``data`` that the dataclass ``cls`` has (the rest live in ``extra``)."""
    return {key: value for key, value in data.items() if key in cls.__dataclass_fields__}


def _norms(data: dict, source: str | None) -> dict:
    unknown = sorted(set(data) - {"mean", "std"})
    if unknown:
        raise ConfigError(f"Field 'norms'{where(source)} has unknown keys {unknown}; use mean and std.")
    return dict(data)
