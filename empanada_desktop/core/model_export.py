"""A registered model as files empanada-napari loads: ``<name>.pth`` + ``<name>.yaml``.

Registered weights are TorchScript already, so a copy of the file is a valid export; the yaml's
``model:`` is the absolute path of the weights, which is what empanada-napari 1.2.4 opens.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from empanada_desktop.core.atomic import atomic_path
from empanada_desktop.core.errors import UserError
from empanada_desktop.core.paths import empanada_user_dir
from empanada_desktop.core.registry_files import RegisteredModel

log = logging.getLogger(__name__)


class ExportExistsError(UserError):
    """The export would replace files; ``existing`` names them."""

    def __init__(self, existing: list[Path]) -> None:
        self.existing = list(existing)
        super().__init__(
            f"{', '.join(str(p) for p in self.existing)} already exists; choose another folder or overwrite it."
        )


def _weights(model: RegisteredModel, what: str) -> Path:
    if not model.installed or model.weights_path is None:
        raise UserError(f"{model.name} cannot be {what}: {model.missing_weights_hint}")
    return Path(model.weights_path)


def export_pair(model: RegisteredModel, out_dir: str | Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Copy the model's weights to ``out_dir/<name>.pth`` (atomically) and write ``<name>.yaml``.

    Raises:
        ExportExistsError: a file of the pair exists and ``overwrite`` is False.
        UserError: the model has no weights, or ``out_dir`` is a file.
    """
    weights = _weights(model, "exported")
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; give a folder to export into.")
    pth = (out_dir / f"{model.name}.pth").resolve()
    yaml_path = out_dir / f"{model.name}.yaml"
    existing = [p for p in (pth, yaml_path) if p.exists()]
    if existing and not overwrite:
        raise ExportExistsError(existing)
    if weights.resolve() != pth:
        with atomic_path(pth) as tmp:
            shutil.copyfile(weights, tmp)
    model.config.with_model_path(str(pth), None).to_yaml(yaml_path)
    log.info("exported %s to %s", model.name, out_dir)
    return pth, yaml_path


def add_to_empanada_napari(model: RegisteredModel) -> Path:
    """Write ``~/.empanada/configs/<name>.yaml`` pointing at the registered weights (atomically)."""
    weights = _weights(model, "added to empanada-napari")
    target = empanada_user_dir() / "configs" / f"{model.name}.yaml"
    return model.config.with_model_path(str(weights), None).to_yaml(target)
