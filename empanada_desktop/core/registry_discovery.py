"""Models the registry finds rather than holds.

Built-in configs ship in ``resources/models``; their weights may sit where empanada-napari
downloaded them (``~/.empanada``) or where an installer bundled them. empanada-napari's user
configs (``~/.empanada/configs/<name>.yaml``) and configs an installer bundled with their weights
are listed too, used in place. Every file that cannot be used is skipped and its reason appended
to ``problems`` (the registry shows them).
"""

from __future__ import annotations

import logging
from pathlib import Path

from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.registry_files import RegisteredModel, weights_file_name
from empanada_desktop.core.resources import builtin_config_dir, bundled_weights_dir

log = logging.getLogger(__name__)

# Built-ins in the order they are listed (the most useful first).
BUILTIN_ORDER = ("MitoNet_v1", "MitoNet_v1_mini", "NucleoNet_base_v2", "DropNet_base_v1")


def builtin_configs(problems: list[str]) -> dict[str, tuple[ModelConfig, Path]]:
    """The built-in configs by name, in ``BUILTIN_ORDER`` then by name, with their files."""
    found: dict[str, tuple[ModelConfig, Path]] = {}
    paths_ = sorted(builtin_config_dir().glob("*.yaml"))
    order = {name: i for i, name in enumerate(BUILTIN_ORDER)}
    for path in sorted(paths_, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        try:
            found[path.stem] = (ModelConfig.from_yaml(path), path)
        except ConfigError as error:  # a broken install; say so, list the rest
            problems.append(str(error))
            log.warning("%s", error)
    return found


def builtin_model(name: str, config: ModelConfig, config_path: Path, empanada_dir: Path) -> RegisteredModel:
    """A built-in that is not registered: with weights empanada-napari downloaded, else weights an
    installer bundled, else without weights ("weights not installed")."""
    file_name = weights_file_name(config.model)
    found = next(
        (
            (folder / file_name, source)
            for folder, source in ((empanada_dir, "empanada"), (bundled_weights_dir(), "bundled"))
            if (folder / file_name).is_file()
        ),
        None,
    )
    if found is None:
        return RegisteredModel(name, config, None, builtin=True, source="builtin", config_path=config_path)
    weights, source = found
    return RegisteredModel(
        name, config.with_model_path(str(weights), config.model_quantized), weights,
        builtin=True, source=source, config_path=config_path,
    )


def discovered_models(empanada_dir: Path, problems: list[str]) -> list[RegisteredModel]:
    """empanada-napari's user configs, then configs an installer bundled with their weights."""
    return _configs_in(empanada_dir / "configs", "empanada", empanada_dir, problems) + _configs_in(
        bundled_weights_dir(), "bundled", empanada_dir, problems
    )


def _configs_in(config_dir: Path, source: str, empanada_dir: Path, problems: list[str]) -> list[RegisteredModel]:
    if not config_dir.is_dir():
        return []
    models = []
    for path in sorted(config_dir.glob("*.yaml")):
        if path.name.startswith("."):
            continue
        try:
            config = ModelConfig.from_yaml(path)
        except ConfigError as error:
            problems.append(str(error))
            log.warning("skipping %s config: %s", source, error)
            continue
        weights = _empanada_weights(config.model, path.parent, empanada_dir)
        if weights is not None:
            config = config.with_model_path(str(weights), config.model_quantized)
        models.append(RegisteredModel(path.stem, config, weights, builtin=False, source=source, config_path=path))
    return models


def _empanada_weights(model: str, config_dir: Path, empanada_dir: Path) -> Path | None:
    """Where empanada-napari would find ``model:`` on this machine, if it is there."""
    if "://" in model:
        name = weights_file_name(model)
        candidates = [empanada_dir / name, config_dir / name]
    else:
        given = Path(model).expanduser()
        candidates = [given] if given.is_absolute() else [
            config_dir / given, empanada_dir / given, empanada_dir / "models" / given.name,
        ]
    return next((c for c in candidates if c.is_file()), None)
