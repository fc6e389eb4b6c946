"""The classes of a new model: id, name, instance or semantic; and checking masks against them.

empanada-napari's training widget takes one line per class, ``<id>,<name>,<instance|semantic>``.
One class means a binary model whose masks hold instance labels (every non-zero value is an
object). Several classes mean panoptic masks: a pixel's value is ``class * label_divisor +
instance`` (instance 0 for semantic classes), and the model has one output channel per class
plus the background channel 0 (docs/EMPANADA_FORMATS.md section 2), so ids must be 1..n.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from empanada_desktop.core.errors import ConfigError

KINDS = ("instance", "semantic")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$")


@dataclass(frozen=True)
class ClassSpec:
    """One class: its id (1..n), display name and kind (``instance`` or ``semantic``)."""

    id: int
    name: str
    kind: str = "instance"

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool) or self.id < 1:
            raise ConfigError(f"class id {self.id!r}: use a whole number from 1 (e.g. 1,mito,instance).")
        if not isinstance(self.name, str) or not _NAME.match(self.name.strip()):
            raise ConfigError(
                f"class {self.id} name {self.name!r}: use 1-40 letters, digits, spaces, '_', '-' or '.'."
            )
        object.__setattr__(self, "name", self.name.strip())
        if self.kind not in KINDS:
            raise ConfigError(f"class {self.id} ({self.name}) kind {self.kind!r}: choose instance or semantic.")

    @property
    def is_instance(self) -> bool:
        return self.kind == "instance"

    def to_text(self) -> str:
        return f"{self.id},{self.name},{self.kind}"

    @classmethod
    def parse(cls, value: Any) -> ClassSpec:
        """From ``"1,mito,instance"`` (kind optional, default instance), a mapping or a ClassSpec."""
        if isinstance(value, ClassSpec):
            return value
        if isinstance(value, Mapping):
            return cls(id=_int(value.get("id"), value), name=str(value.get("name", "")),
                       kind=str(value.get("kind", "instance")))
        parts = [part.strip() for part in str(value).split(",")]
        if len(parts) not in (2, 3):
            raise ConfigError(f"class {value!r}: write id,name,kind such as 1,mito,instance or 2,er,semantic.")
        return cls(id=_int(parts[0], value), name=parts[1], kind=parts[2] if len(parts) == 3 else "instance")


def _int(text: Any, whole: Any) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise ConfigError(f"class {whole!r}: the id must be a whole number, e.g. 1,mito,instance.") from None


def parse_classes(values: Iterable[Any]) -> tuple[ClassSpec, ...]:
    """Classes from text lines or mappings, checked: ids 1..n in order, names unique.

    Raises:
        ConfigError: naming the class that is wrong.
    """
    classes = tuple(ClassSpec.parse(v) for v in values if not (isinstance(v, str) and not v.strip()))
    if not classes:
        raise ConfigError("classes: give at least one class, e.g. 1,mito,instance.")
    ids = [c.id for c in classes]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise ConfigError(
            f"classes: ids must be 1..{len(ids)} with none missing or repeated (got {ids}); the class id is "
            "the model's output channel."
        )
    names = [c.name.lower() for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"classes: each class needs its own name (got {[c.name for c in classes]}).")
    return tuple(sorted(classes, key=lambda c: c.id))


def mask_problem(mask: np.ndarray, classes: Sequence[ClassSpec], label_divisor: int) -> str | None:
    """Why ``mask`` does not fit the classes, or None.

    One class: any non-negative label is fine (every object is an instance of it). Several:
    every non-zero value must be ``class * label_divisor + instance`` with a known class, and a
    semantic class carries no instance number.
    """
    values = np.unique(np.asarray(mask))
    if values.size and values.min() < 0:
        return f"holds negative value {int(values.min())}"
    if len(classes) == 1:
        return None
    values = values[values > 0].astype(np.int64)
    class_ids = values // int(label_divisor)
    known = {c.id: c for c in classes}
    unknown = values[~np.isin(class_ids, list(known))]
    if unknown.size:
        value = int(unknown[0])
        return (
            f"holds value {value}, which is class {value // label_divisor} with label divisor {label_divisor}; "
            f"the classes are {', '.join(str(c.id) for c in classes)} (pixel = class * {label_divisor} + instance)"
        )
    for class_id in np.unique(class_ids):
        spec = known[int(class_id)]
        if not spec.is_instance and np.any(values[class_ids == class_id] % label_divisor):
            value = int(values[(class_ids == class_id) & (values % label_divisor != 0)][0])
            return (f"holds value {value} (an instance number) for semantic class {spec.id} ({spec.name}); "
                    f"semantic pixels are exactly {spec.id * label_divisor}")
    return None


def class_pixel_counts(masks: Iterable[np.ndarray], classes: Sequence[ClassSpec], label_divisor: int) -> dict[int, int]:
    """Pixels of each class over ``masks`` (for the data check)."""
    counts = {c.id: 0 for c in classes}
    for mask in masks:
        mask = np.asarray(mask)
        if len(classes) == 1:
            counts[classes[0].id] += int(np.count_nonzero(mask))
            continue
        ids, number = np.unique(mask[mask > 0].astype(np.int64) // int(label_divisor), return_counts=True)
        for class_id, count in zip(ids.tolist(), number.tolist()):
            if class_id in counts:
                counts[class_id] += int(count)
    return counts
