"""The model registry: which models exist, where their weights are, and how to add more.

Three kinds of entries, listed together by :meth:`ModelRegistry.list`:

* **registered** models live in the app home, one folder each:
  ``app_home()/models/<name>/{<name>.pth, <name>.yaml, registry.json}``. The yaml/pth pair is
  exactly what empanada-napari loads; ``registry.json`` records the sha256, size, parameter count
  and where the file came from. Source ``"user"``, or ``"builtin"`` when it holds a built-in's
  weights.
* **built-in** configs ship in ``resources/models``. Without weights they are listed as "weights
  not installed" with the exact file to import; nothing is downloaded.
* **discovered** models of an empanada-napari install (``~/.empanada``): built-in weights it
  downloaded (named after the URL's last path part) and its user configs
  (``~/.empanada/configs/<name>.yaml``). Listed with source ``"empanada"``, used in place and
  never copied until the user imports or adopts them.

Core has no torch, so loading a file to check it is the caller's ``verify(path) -> dict``
(``empanada_desktop.backend.torchscript.verify_model_file``); the registry itself checks that a
file is a complete TorchScript archive before anything is written.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from empanada_desktop.core import paths
from empanada_desktop.core.errors import ConfigError, RegistryError, UserError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.names import check_model_name
from empanada_desktop.core.registry_discovery import builtin_configs, builtin_model, discovered_models
from empanada_desktop.core.registry_files import (
    RegisteredModel,
    check_torchscript_archive,
    VerifyFn,
    copy_with_sha256,
    existing_weights,
    file_sha256,
    read_entry,
    read_entry_model,
    run_verify,
    weights_file_name,
    write_entry_json,
)
from empanada_desktop.core.registry_recovery import recover_interrupted, staging_folder

__all__ = ["ModelRegistry", "RegisteredModel", "VerifyFn", "weights_file_name"]

log = logging.getLogger(__name__)



class ModelRegistry:
    """Registered, built-in and discovered models; see the module docstring.

    Args:
        home: the app home; models live in ``home/models``. Defaults to ``paths.app_home()``.
        empanada_dir: empanada-napari's folder; defaults to ``paths.empanada_user_dir()``.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        empanada_dir: str | os.PathLike[str] | None = None,
    ):
        #: The folder holding one sub-folder per registered model.
        self.models_dir = Path(home) / "models" if home is not None else paths.models_dir()
        self.models_dir.mkdir(parents=True, exist_ok=True)
        #: Models put back after an interrupted rename or import (see ``registry_recovery``).
        self.recovered: list[str] = recover_interrupted(self.models_dir)
        self.empanada_dir = Path(empanada_dir) if empanada_dir is not None else paths.empanada_user_dir()
        #: Files found while listing that could not be used, each with the reason.
        self.problems: list[str] = []

    # -- listing ------------------------------------------------------------------------------

    def list(self) -> list[RegisteredModel]:
        """All models: built-ins first, then registered ones, then those found in ~/.empanada."""
        self.problems = []
        entries: dict[str, RegisteredModel] = {}
        builtins = self._builtin_configs()
        registered = self._registered(builtins)
        for name, (config, config_path) in builtins.items():
            if name in registered:
                entries[name] = registered.pop(name)
            else:
                entries[name] = builtin_model(name, config, config_path, self.empanada_dir)
        for name in sorted(registered, key=str.lower):
            entries[name] = registered[name]
        for model in discovered_models(self.empanada_dir, self.problems):
            if _lower(model.name) not in {_lower(n) for n in entries}:
                entries[model.name] = model
        return list(entries.values())

    def names(self) -> list[str]:
        return [model.name for model in self.list()]

    def get(self, name: str) -> RegisteredModel:
        """The model called ``name``; unknown names raise RegistryError listing the known ones."""
        models = self.list()
        for model in models:
            if model.name == name:
                return model
        matches = [m for m in models if _lower(m.name) == _lower(name)]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(m.name for m in models) or "none"
        raise RegistryError(f"Unknown model '{name}'. Known models: {known}.")

    def describe(self, name: str) -> dict[str, Any]:
        """Facts about a model for people: classes, kind, padding, first label, size, ..."""
        model = self.get(name)
        config = model.config
        things = set(config.thing_list)
        if not things:
            kind = "semantic"
        elif things == set(config.labels):
            kind = "instance"
        else:
            kind = "panoptic (instance and semantic classes)"
        divisor = config.engine_params.label_divisor
        if len(config.labels) == 1:
            start = {config.class_names[config.labels[0]]: 1}
        else:  # panoptic ids: class * label_divisor + instance
            start = {config.class_names[c]: c * divisor + 1 for c in config.labels}
        return {
            "name": model.name,
            "source": model.source,
            "builtin": model.builtin,
            "installed": model.installed,
            "weights": str(model.weights_path) if model.weights_path else None,
            "missing_weights": model.missing_weights_hint,
            "classes": {c: config.class_names[c] for c in config.labels},
            "kind": kind,
            "instance_classes": [config.class_names[c] for c in config.thing_list],
            "padding_factor": config.padding_factor,
            "norms": {"mean": config.norms.mean, "std": config.norms.std},
            "first_label": start,
            "label_divisor": divisor,
            "architecture": config.architecture,
            "encoder": config.encoder,
            "parameters": model.parameters,
            "size_bytes": model.size,
            "sha256": model.sha256,
            "description": config.description,
        }

    # -- changing -----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        config: ModelConfig,
        weights_file: str | os.PathLike[str],
        *,
        copy: bool = True,
        verify: VerifyFn | None = None,
        imported_from: str | None = None,
    ) -> RegisteredModel:
        """Register ``weights_file`` with ``config`` under ``name`` in the app home.

        With ``copy=True`` the file is copied into the model's folder; with ``copy=False`` the
        registry refers to it where it is (for large files the app wrote itself). Either way the
        file must be a complete TorchScript archive and pass ``verify``; on any failure nothing
        of the registry changes.
        """
        self._check_new_name(name)
        source_file = existing_weights(Path(weights_file))
        check_torchscript_archive(source_file)
        info = run_verify(verify, source_file)
        builtin = name in self._builtin_configs()
        staging = staging_folder(self.models_dir, name, uuid.uuid4().hex[:8])
        staging.mkdir()
        try:
            if copy:
                target = self.models_dir / name / f"{name}.pth"
                sha256, size = copy_with_sha256(source_file, staging / target.name)
                weights_ref = target.name
            else:
                target = source_file.resolve()
                sha256, size = file_sha256(target), target.stat().st_size
                weights_ref = str(target)
            final_config = config.with_model_path(str(target))
            final_config.to_yaml(staging / f"{name}.yaml")
            write_entry_json(
                staging / "registry.json",
                {
                    "name": name,
                    "source": "builtin" if builtin else "user",
                    "weights": weights_ref,
                    "sha256": sha256,
                    "size": size,
                    "parameters": info.get("parameters"),
                    "format": info.get("format"),
                    "imported_from": imported_from or str(source_file.resolve()),
                },
            )
            final_dir = self.models_dir / name
            if final_dir.exists():
                raise RegistryError(f"A model called '{name}' appeared meanwhile; choose another name.")
            os.replace(staging, final_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("registered model %s (%s bytes, sha256 %s)", name, size, sha256)
        return self.get(name)

    def import_weights(
        self,
        file: str | os.PathLike[str],
        name: str,
        like: str | None = None,
        config_file: str | os.PathLike[str] | None = None,
        verify: VerifyFn | None = None,
    ) -> RegisteredModel:
        """Copy a TorchScript ``.pth`` into the app home and register it.

        The config comes from ``config_file`` (an empanada YAML), else from the model ``like``
        (any known name), else from the built-in of the same name or whose weights file is
        called like ``file`` (``MitoNet_v1.pth``), else from a ``<stem>.yaml`` next to the file
        (an empanada export); otherwise a RegistryError asks for one of them.
        """
        file = Path(file)
        if like and config_file:
            raise ConfigError(
                "Give either a model to copy the config from (--like) or a config file (--config), "
                "not both."
            )
        existing_weights(file)
        if config_file:
            config = ModelConfig.from_yaml(config_file)
        elif like:
            config = self.get(like).config
        else:
            config = self._guess_config(file, name)
        return self.register(
            name, config, file, copy=True, verify=verify, imported_from=str(file.resolve())
        )

    def adopt(
        self, name: str, *, new_name: str | None = None, verify: VerifyFn | None = None
    ) -> RegisteredModel:
        """Copy a model found in ~/.empanada into the app home (it then no longer depends on it)."""
        model = self.get(name)
        if model.source != "empanada":
            raise RegistryError(
                f"'{model.name}' is not a model found in {self.empanada_dir}; nothing to adopt."
            )
        if not model.installed:
            raise RegistryError(f"'{model.name}' has no weights file: {model.missing_weights_hint}")
        return self.register(
            new_name or model.name, model.config, model.weights_path, copy=True, verify=verify
        )

    def rename(self, old: str, new: str) -> RegisteredModel:
        """Rename a registered model (its folder, files, yaml ``model:`` and registry.json)."""
        model = self._owned(old, "renamed")
        if new == model.name:
            return model
        self._check_new_name(new, ignore=model.name)
        old_dir = self.models_dir / model.name
        staging = staging_folder(self.models_dir, new, uuid.uuid4().hex[:8])
        os.replace(old_dir, staging)
        try:
            entry = read_entry(staging / "registry.json")
            weights_ref = entry["weights"]
            if weights_ref == f"{model.name}.pth":
                os.replace(staging / weights_ref, staging / f"{new}.pth")
                weights_ref = f"{new}.pth"
                weights_target = str(self.models_dir / new / weights_ref)
            else:
                weights_target = weights_ref
            model.config.with_model_path(weights_target, None).to_yaml(staging / f"{new}.yaml")
            (staging / f"{model.name}.yaml").unlink(missing_ok=True)
            source = "builtin" if new in self._builtin_configs() else "user"
            entry.update(name=new, weights=weights_ref, source=source)
            write_entry_json(staging / "registry.json", entry)
            os.replace(staging, self.models_dir / new)
        except BaseException:
            log.exception("renaming %s to %s failed; restoring", model.name, new)
            if (staging / f"{new}.pth").exists() and not (staging / f"{model.name}.pth").exists():
                os.replace(staging / f"{new}.pth", staging / f"{model.name}.pth")
            if staging.exists():
                os.replace(staging, old_dir)
            raise
        log.info("renamed model %s to %s", model.name, new)
        return self.get(new)

    def remove(self, name: str) -> None:
        """Delete a registered model's folder (a built-in stays listed, without weights).

        A damaged model folder (unreadable registry.json or config), which ``list()`` skips, can
        be removed by its folder name too, so that it can be imported again.
        """
        folder = self._damaged_folder(name)
        if folder is None:
            folder = self.models_dir / self._owned(name, "removed").name
        trash = self.models_dir / f".trash-{folder.name}-{uuid.uuid4().hex[:8]}"
        os.replace(folder, trash)  # atomic: gone from the list at once
        shutil.rmtree(trash, ignore_errors=True)
        log.info("removed model %s", folder.name)

    # -- internals ----------------------------------------------------------------------------

    def _owned(self, name: str, verb: str) -> RegisteredModel:
        model = self.get(name)
        if model.registered:
            return model
        if model.source == "bundled" and not model.builtin:
            raise RegistryError(
                f"'{model.name}' was installed with the app ({model.config_path}) and cannot be "
                f"{verb} here; import it first to get your own copy."
            )
        if model.source == "empanada":
            raise RegistryError(
                f"'{model.name}' belongs to empanada-napari ({model.weights_path or model.config_path}) "
                f"and cannot be {verb} here; import it first to get your own copy."
            )
        raise RegistryError(f"'{model.name}' is a built-in model and cannot be {verb}.")

    def _check_new_name(self, name: str, ignore: str | None = None) -> None:
        check_model_name(name, RegistryError)
        for existing in self._registered_dirs():
            if existing.name != ignore and _lower(existing.name) == _lower(name):
                damaged = self._damaged_folder(existing.name)
                if damaged is not None:
                    raise RegistryError(
                        f"the damaged model folder {damaged} is in the way; remove it with "
                        f"'empanada-desktop models remove {damaged.name}' (or Remove in the model manager) "
                        "and try again."
                    )
                raise RegistryError(
                    f"A model called '{existing.name}' is already registered; choose another name "
                    "or remove that model first."
                )

    def _guess_config(self, file: Path, name: str) -> ModelConfig:
        builtins = self._builtin_configs()
        if name in builtins:
            return builtins[name][0]
        for config, _ in builtins.values():
            if weights_file_name(config.model) == file.name:
                return config
        sibling = file.with_suffix(".yaml")
        if sibling.is_file():
            return ModelConfig.from_yaml(sibling)
        raise RegistryError(
            f"Which kind of model is {file.name}? Give its empanada config (--config FILE.yaml) or a "
            f"model it was finetuned from (--like MitoNet_v1); known: {', '.join(self.names())}."
        )

    def _damaged_folder(self, name: str) -> Path | None:
        """The model folder called ``name`` (any case) if it cannot be read as a model, else None."""
        for folder in self._registered_dirs():
            if _lower(folder.name) == _lower(name):
                try:
                    read_entry_model(folder, builtin=False)
                except UserError:
                    return folder
                return None
        return None

    def _builtin_configs(self) -> dict[str, tuple[ModelConfig, Path]]:
        return builtin_configs(self.problems)

    def _registered_dirs(self) -> list[Path]:
        return sorted(p for p in self.models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _registered(self, builtins: dict) -> dict[str, RegisteredModel]:
        models: dict[str, RegisteredModel] = {}
        for folder in self._registered_dirs():
            try:
                model = read_entry_model(folder, builtin=folder.name in builtins)
            except UserError as error:
                self.problems.append(str(error))
                log.warning("%s", error)
                continue
            models[model.name] = model
        return models


def _lower(name: str) -> str:
    # Model folders must not collide on case-insensitive file systems (macOS, Windows).
    return name.casefold()
