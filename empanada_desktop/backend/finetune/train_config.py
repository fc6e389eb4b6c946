"""``TrainConfig``: the settings of training a new model, a ``FinetuneConfig`` with more fields.

Training a new model runs the finetuning loop (run folder, checkpoints, resume, Ctrl-C, export)
with a model built from these settings instead of a registered one. Being a ``FinetuneConfig``
subclass, it goes everywhere a finetuning config goes; its run folder's ``config.yaml`` stores it
under ``train:`` (``SECTION``) so that ``--resume`` rebuilds the same kind of config.

Plain data, no torch: the architecture and encoder names are checked against
``backend/models`` by a test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empanada_desktop.backend.finetune.config import FinetuneConfig
from empanada_desktop.core.classes import ClassSpec, parse_classes
from empanada_desktop.core.errors import ConfigError

ARCHITECTURE_CHOICES = ("PanopticDeepLabPR", "PanopticBiFPNPR")
ENCODER_CHOICES = ("resnet18", "resnet34", "resnet50")
INIT_CHOICES = ("random", "cem")
CEM_ENCODER = "resnet50"
# The CEM1.5M file empanada-napari downloads (Zenodo record 6453160); here imported, never downloaded.
CEM_FILE_NAME = "cem1.5m_swav_resnet50_200ep_balanced.pth.tar"
CEM_SOURCE = "https://zenodo.org/record/6453160/files/cem1.5m_swav_resnet50_200ep_balanced.pth.tar"


def imported_cem_path() -> Path:
    """Where the imported CEM1.5M file lives: ``<app home>/pretrained/<CEM_FILE_NAME>``."""
    from empanada_desktop.core.paths import app_home

    return app_home() / "pretrained" / CEM_FILE_NAME


def cem_hint() -> str:
    return (
        f"Get {CEM_FILE_NAME} (CEM1.5M SwAV ResNet-50 weights, {CEM_SOURCE}, the file empanada-napari "
        f"downloads) and import it once with: empanada-desktop train --init cem FILE ..."
    )


@dataclass(frozen=True)
class TrainConfig(FinetuneConfig):
    """Settings of training a new model (see ``FinetuneConfig`` for the shared ones).

    Attributes:
        architecture: ``PanopticDeepLabPR`` (MitoNet_v1's, patch sizes multiple of 16) or
            ``PanopticBiFPNPR`` (MitoNet_v1_mini's, multiples of 128).
        encoder: ``resnet18``, ``resnet34`` or ``resnet50``; trained with normal batch norm.
        init: ``random`` or ``cem`` (CEM1.5M SwAV ResNet-50 weights, imported once into the app
            home; ResNet-50 only).
        init_file: the CEM file to use; None takes the imported copy.
        classes: one or more ``ClassSpec`` (``"1,mito,instance"`` is accepted too).
        label_divisor: panoptic ids are ``class * label_divisor + instance`` (several classes).
        model: set automatically (what the run starts from, shown when resuming).
        layers: ``all`` for random init (an untrained encoder must train); with CEM weights any
            finetunable-layer choice.
    """

    model: str = ""
    train_dirs: tuple[Path, ...] = ()
    new_name: str = ""
    layers: str = "all"
    iterations: int = 500
    architecture: str = "PanopticDeepLabPR"
    encoder: str = "resnet50"
    init: str = "random"
    init_file: Path | None = None
    classes: tuple[ClassSpec, ...] = (ClassSpec(1, "object", "instance"),)
    label_divisor: int = 1000
    norms: tuple[float, float] | None = None

    SECTION = "train"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURE_CHOICES:
            raise ConfigError(f"architecture {self.architecture!r}: choose {' or '.join(ARCHITECTURE_CHOICES)}.")
        if self.encoder not in ENCODER_CHOICES:
            raise ConfigError(f"encoder {self.encoder!r}: choose one of {', '.join(ENCODER_CHOICES)}.")
        if self.init not in INIT_CHOICES:
            raise ConfigError(f"init {self.init!r}: choose random or cem (CEM1.5M ResNet-50 weights).")
        if self.init == "cem" and self.encoder != CEM_ENCODER:
            raise ConfigError(
                f"init cem: the CEM1.5M weights are a ResNet-50 encoder; choose encoder resnet50 "
                f"(not {self.encoder}) or init random."
            )
        if self.init == "random" and self.layers != "all":
            raise ConfigError(
                f"layers {self.layers!r}: a randomly initialised encoder must train, so use layers all "
                "(finetunable layers apply to CEM-initialised encoders)."
            )
        if self.init_file is not None:
            object.__setattr__(self, "init_file", Path(self.init_file))
        object.__setattr__(self, "classes", parse_classes(self.classes))
        if not isinstance(self.label_divisor, int) or isinstance(self.label_divisor, bool) or self.label_divisor < 1:
            raise ConfigError(f"label_divisor {self.label_divisor!r}: use a whole number >= 1 (1000 is empanada's).")
        if len(self.classes) > 1 and self.label_divisor < 2:
            raise ConfigError("label_divisor: several classes need a divisor above the largest instance number (1000).")
        if self.norms is not None:
            mean, std = (float(v) for v in self.norms)
            if not (0 <= mean <= 1 and 0 < std <= 1):
                raise ConfigError(f"norms {self.norms!r}: mean in [0, 1] and std in (0, 1] (fractions of 255).")
            object.__setattr__(self, "norms", (mean, std))
        if not self.model:
            object.__setattr__(self, "model", f"new {self.architecture}/{self.encoder} ({self.init} init)")
        super().__post_init__()

    @property
    def thing_list(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes if c.is_instance)

    @property
    def num_classes(self) -> int:
        """1 for one class (sigmoid), else classes + background (empanada-napari's ``n + 1``)."""
        return 1 if len(self.classes) == 1 else len(self.classes) + 1

    def description_text(self, steps: int) -> str:
        classes = ", ".join(f"{c.name} ({c.kind})" for c in self.classes)
        return (
            f"Trained with empanada-desktop from {'CEM1.5M SwAV weights' if self.init == 'cem' else 'random weights'}: "
            f"{self.architecture} with a {self.encoder} encoder, classes {classes}, {steps} iterations, "
            f"batch {self.batch_size}, patch {self.patch_size} px, data {', '.join(str(d) for d in self.train_dirs)}."
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["classes"] = [c.to_text() for c in self.classes]
        out["init_file"] = None if self.init_file is None else str(self.init_file)
        out["norms"] = None if self.norms is None else list(self.norms)
        return out


def train_default_of(field_name: str) -> Any:
    """The default of a ``TrainConfig`` setting (e.g. ``iterations`` 500)."""
    found = TrainConfig.__dataclass_fields__.get(field_name)
    if found is None or found.default is dataclasses.MISSING:
        raise KeyError(field_name)
    return found.default


def config_class(section: str) -> type[FinetuneConfig]:
    """The config class stored under a run folder's ``config.yaml`` section."""
    return TrainConfig if section == TrainConfig.SECTION else FinetuneConfig


__all__ = ["ARCHITECTURE_CHOICES", "CEM_FILE_NAME", "CEM_SOURCE", "ENCODER_CHOICES", "INIT_CHOICES", "TrainConfig",
           "cem_hint", "config_class", "imported_cem_path", "train_default_of"]
