"""The registry's on-disk pieces: the entry type, checksums, the TorchScript archive check.

Split from ``registry.py`` to keep that file about the registry's rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from empanada_desktop.core.atomic import atomic_path, write_text
from empanada_desktop.core.errors import ConfigError, ModelLoadError, RegistryError, UserError
from empanada_desktop.core.model_config import ModelConfig

log = logging.getLogger(__name__)

#: ``verify(path) -> dict`` loads a model file (the backend's verify_model_file); may raise.
VerifyFn = Callable[[Path], dict]

_CHUNK = 4 * 1024 * 1024
ENTRY_VERSION = 1


def weights_file_name(model: str) -> str:
    """The file name empanada-napari gives a downloaded model: the URL's last path part.

    ``https://zenodo.org/record/6861565/files/MitoNet_v1.pth?download=1`` -> ``MitoNet_v1.pth``;
    a local path gives its file name.
    """
    if "://" in model:
        return unquote(os.path.basename(urlparse(model).path))
    return Path(model).name


@dataclass(frozen=True)
class RegisteredModel:
    """One model as the registry lists it.

    Attributes:
        name: the registry name (also the file stem in the app home).
        config: its config; ``config.model`` is the local weights path when there is one.
        weights_path: the local TorchScript file, or None when the weights are not installed.
        builtin: the name is one of the built-in models shipped in resources/models.
        source: "builtin" (shipped config, weights imported or missing), "user" (imported or
            finetuned here) or "empanada" (found in an empanada-napari install, used in place).
        sha256, size, parameters: recorded at registration (None for unregistered entries).
        config_path: the YAML file the config was read from.
        registered: it has a folder in the app home (can be renamed and removed).
    """

    name: str
    config: ModelConfig
    weights_path: Path | None
    builtin: bool
    source: str
    sha256: str | None = None
    size: int | None = None
    parameters: int | None = None
    config_path: Path | None = None
    registered: bool = False

    @property
    def installed(self) -> bool:
        """The weights file is present on this machine."""
        return self.weights_path is not None and Path(self.weights_path).is_file()

    @property
    def weights_file_name(self) -> str:
        """The file to import for this model (``MitoNet_v1.pth`` for the built-in MitoNet_v1)."""
        if self.registered or self.weights_path is not None:
            return Path(self.weights_path).name if self.weights_path else f"{self.name}.pth"
        return weights_file_name(self.config.model)

    @property
    def missing_weights_hint(self) -> str | None:
        """None when installed; else which file to import and how, in words."""
        if self.installed:
            return None
        file_name = self.weights_file_name
        if self.registered:
            return (
                f"weights not installed: the file {self.weights_path} is gone; remove the model or "
                f"import {file_name} again."
            )
        hint = (
            f"weights not installed: import {file_name} "
            f"(empanada-desktop models import {file_name} --name {self.name})"
        )
        if "://" in self.config.model:
            hint += f"; it can be downloaded from {self.config.model}"
        return hint


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_with_sha256(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` to ``target`` atomically; return the copy's sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    with atomic_path(target) as tmp:
        with open(source, "rb") as reader, open(tmp, "wb") as writer:
            for chunk in iter(lambda: reader.read(_CHUNK), b""):
                digest.update(chunk)
                writer.write(chunk)
                size += len(chunk)
    if size != source.stat().st_size:
        raise ModelLoadError(f"{source} changed while it was being copied; try the import again.")
    return digest.hexdigest(), size


def check_torchscript_archive(path: Path) -> None:
    """Raise ModelLoadError unless ``path`` is a complete TorchScript archive.

    ``torch.jit.save`` writes a zip archive holding ``<name>/data.pkl`` and the model's code
    under ``<name>/code/``; a plain ``torch.save`` checkpoint has no ``code/``. A truncated file
    (an interrupted download or copy) has lost the zip directory at its end.
    """
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise ModelLoadError(
                f"{path} is truncated (an interrupted download or copy?): the end of the archive is "
                "missing. Copy or download the file again."
            )
        raise ModelLoadError(
            f"{path} is not a TorchScript model file. empanada models are .pth files written by "
            "torch.jit.save (like MitoNet_v1.pth); choose such a file."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelLoadError(f"{path} is damaged ({error}); copy or download it again.") from None
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        raise ModelLoadError(f"{path} is a zip file but not a PyTorch model; choose the model's .pth file.")
    if not any("/code/" in n or n.startswith("code/") for n in names):
        raise ModelLoadError(
            f"{path} is a plain PyTorch checkpoint (weights without the model's code), not a "
            "TorchScript model. Export it with torch.jit.script(model).save(...) or with "
            "empanada-desktop's finetuning, then import the exported .pth."
        )


# What each field of registry.json must be when present; anything else is a damaged entry.
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "source": (str,), "weights": (str,), "sha256": (str,), "size": (int,),
    "parameters": (int,), "format": (str,), "imported_from": (str,), "version": (int,),
}
_REMEDY = ("remove it with 'empanada-desktop models remove {name}' (or Remove in the model manager) "
           "and import its .pth file again")


def read_entry(path: Path) -> dict[str, Any]:
    """Read a model folder's registry.json; problems raise RegistryError naming it."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(
            f"{path.parent} is not a registered model (no registry.json); move it out of "
            f"{path.parent.parent} or import its .pth again."
        ) from None
    except (OSError, ValueError) as error:
        raise RegistryError(f"{path} is damaged ({error}); {_REMEDY.format(name=path.parent.name)}") from None
    if not isinstance(entry, dict):
        raise RegistryError(f"{path} is damaged (not a JSON object); {_REMEDY.format(name=path.parent.name)}")
    for key, kinds in _ENTRY_TYPES.items():
        value = entry.get(key)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise RegistryError(
                f"{path} is damaged ('{key}' is {type(value).__name__} {value!r}); "
                f"{_REMEDY.format(name=path.parent.name)}"
            )
    return entry


def write_entry_json(path: Path, entry: dict[str, Any]) -> None:
    """Write a model folder's registry.json atomically."""
    data = {"version": ENTRY_VERSION, **{k: v for k, v in entry.items() if k != "version"}}
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_entry_model(folder: Path, *, builtin: bool) -> RegisteredModel:
    """Load one registered model's folder; a broken folder raises RegistryError naming it."""
    entry = read_entry(folder / "registry.json")
    name = folder.name
    weights_ref = entry.get("weights") or f"{name}.pth"
    weights = Path(weights_ref) if Path(weights_ref).is_absolute() else folder / weights_ref
    yaml_path = folder / f"{name}.yaml"
    try:
        config = ModelConfig.from_yaml(yaml_path)
    except ConfigError as error:
        raise RegistryError(f"Registered model '{name}' has a broken config: {error}") from None
    # The yaml's model: may be stale if the app home moved; the folder is the truth.
    config = config.with_model_path(str(weights), None)
    return RegisteredModel(
        name,
        config,
        weights,
        builtin=builtin,
        source="builtin" if builtin else entry.get("source", "user"),
        sha256=entry.get("sha256"),
        size=entry.get("size"),
        parameters=entry.get("parameters"),
        config_path=yaml_path,
        registered=True,
    )


def existing_weights(path: Path) -> Path:
    if not path.exists():
        raise ModelLoadError(f"Model file {path} does not exist; check the path.")
    if not path.is_file():
        raise ModelLoadError(f"{path} is a folder, not a model file; choose the .pth file inside it.")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"Model file {path} is empty (0 bytes); copy or download it again.")
    return path


def run_verify(verify: VerifyFn | None, path: Path) -> dict:
    if verify is None:
        log.info("registering %s without loading it (no verify function given)", path)
        return {}
    try:
        info = verify(path)
    except UserError:
        raise
    except Exception as error:  # a loader failing in an unforeseen way is still the file's fault
        raise ModelLoadError(f"{path} could not be loaded as a model: {error}") from error
    return dict(info or {})
