"""The typed blocks of a model config (norms, engine and criterion parameters) and the field
checks they share with :class:`~empanada_desktop.core.model_config.ModelConfig`.

Every check raises ``ConfigError`` naming the field (and the file, when ``source`` is given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from empanada_desktop.core.errors import ConfigError

DEFAULT_MEAN = 0.57571
DEFAULT_STD = 0.12765


def where(source: str | None) -> str:
    return f" in {source}" if source else ""


def number(value: Any, name: str, source: str | None, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"Field '{name}'{where(source)} must be a number, got {value!r}.")
    if positive and value <= 0:
        raise ConfigError(f"Field '{name}'{where(source)} must be greater than 0, got {value!r}.")
    return float(value)


def integer(value: Any, name: str, source: str | None, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"Field '{name}'{where(source)} must be a whole number, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"Field '{name}'{where(source)} must be at least {minimum}, got {value}.")
    return int(value)


def int_tuple(value: Any, name: str, source: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ConfigError(
            f"Field '{name}'{where(source)} must be a list of class ids such as [1], got {value!r}."
        )
    return tuple(integer(item, f"{name}[{i}]", source, minimum=0) for i, item in enumerate(value))


def mapping(value: Any, name: str, source: str | None) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"Field '{name}'{where(source)} must be a mapping, got {value!r}.")
    return value


@dataclass(frozen=True)
class Norms:
    """Intensity normalisation: ``(pixel / dtype_max - mean) / std``."""

    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", number(self.mean, "norms.mean", None))
        object.__setattr__(self, "std", number(self.std, "norms.std", None, positive=True))


@dataclass(frozen=True)
class EngineParams:
    """Panoptic-DeepLab post-processing settings (``FINETUNE.engine_params``)."""

    confidence_thr: float = 0.5
    label_divisor: int = 1000
    nms_kernel: int = 7
    nms_threshold: float = 0.1
    stuff_area: int = 64
    thing_list: tuple[int, ...] = (1,)
    void_label: int = 0

    def __post_init__(self) -> None:
        thr = number(self.confidence_thr, "engine_params.confidence_thr", None)
        if not 0.0 <= thr <= 1.0:
            raise ConfigError(f"Field 'engine_params.confidence_thr' must be within 0..1, got {thr}.")
        object.__setattr__(self, "confidence_thr", thr)
        object.__setattr__(
            self, "label_divisor", integer(self.label_divisor, "engine_params.label_divisor", None, minimum=1)
        )
        object.__setattr__(
            self, "nms_kernel", integer(self.nms_kernel, "engine_params.nms_kernel", None, minimum=1)
        )
        object.__setattr__(
            self, "nms_threshold", number(self.nms_threshold, "engine_params.nms_threshold", None)
        )
        object.__setattr__(
            self, "stuff_area", integer(self.stuff_area, "engine_params.stuff_area", None, minimum=0)
        )
        object.__setattr__(self, "thing_list", int_tuple(self.thing_list, "engine_params.thing_list", None))
        object.__setattr__(self, "void_label", integer(self.void_label, "engine_params.void_label", None))


@dataclass(frozen=True)
class CriterionParams:
    """PanopticLoss weights (``FINETUNE.criterion_params``)."""

    ce_weight: float = 1.0
    mse_weight: float = 200.0
    l1_weight: float = 0.01
    pr_weight: float = 1.0
    top_k_percent: float = 0.2

    def __post_init__(self) -> None:
        for name in ("ce_weight", "mse_weight", "l1_weight", "pr_weight"):
            value = number(getattr(self, name), f"criterion_params.{name}", None)
            if value < 0:
                raise ConfigError(f"Field 'criterion_params.{name}' must not be negative, got {value}.")
            object.__setattr__(self, name, value)
        top_k = number(self.top_k_percent, "criterion_params.top_k_percent", None)
        if not 0.0 < top_k <= 1.0:
            raise ConfigError(f"Field 'criterion_params.top_k_percent' must be within (0, 1], got {top_k}.")
        object.__setattr__(self, "top_k_percent", top_k)
