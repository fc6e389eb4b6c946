"""Putting back models whose rename or registration was interrupted (a kill, a power cut).

``ModelRegistry.register`` builds a new model in ``models/.staging-<name>-<pid>-<id>`` and renames
it into place; ``rename`` first moves the model's folder to such a staging folder, renames its
files there and moves it to the new name. A process killed in between leaves the model in the
hidden staging folder, under neither name. :func:`recover_interrupted` runs when a registry is
opened: a staging folder with its ``registry.json`` is a whole model and is put back (under the
name its entry records if that is free, else the name its files were being given); one
without it is an unfinished registration whose source file is still where the user has it, and
is deleted. Folders that a live process may still be writing are left alone. Left-over
``.trash-*`` folders of an interrupted remove are deleted.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from empanada_desktop.core.errors import ConfigError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.registry_files import write_entry_json

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
#: A staging folder of unknown or possibly reused process id is recovered when this old.
STALE_SECONDS = 3600.0
#: A staging folder without a process id (older versions) is recovered when this old.
LEGACY_STALE_SECONDS = 60.0
_STAGING = re.compile(r"^\.staging-(?P<name>.+?)(?:-(?P<pid>\d+))?-(?P<token>[0-9a-f]{8})$")


def staging_folder(models_dir: Path, name: str, token: str) -> Path:
    """Where ``name`` is assembled before it moves into place (the process id marks it as ours)."""
    return models_dir / f"{STAGING_PREFIX}{name}-{os.getpid()}-{token}"


def recover_interrupted(models_dir: Path) -> list[str]:
    """Put back models left in staging folders and delete left-over trash; returns what was done."""
    notes: list[str] = []
    try:
        hidden = [p for p in models_dir.iterdir() if p.name.startswith(".") and p.is_dir()]
    except OSError:
        return notes
    for folder in hidden:
        if folder.name.startswith(TRASH_PREFIX):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        match = _STAGING.match(folder.name)
        if match is None or _maybe_in_use(folder, match.group("pid")):
            continue
        try:
            note = _recover(models_dir, folder, match.group("name"))
        except OSError as error:
            note = f"could not put back the model in {folder} ({error}); move its files out by hand"
        if note:
            log.warning("%s", note)
            notes.append(note)
    return notes


def _maybe_in_use(folder: Path, pid_text: str | None) -> bool:
    try:
        age = time.time() - folder.stat().st_mtime
    except OSError:
        return True
    if pid_text is None:
        return age < LEGACY_STALE_SECONDS
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # this process is assembling it right now
    return _process_alive(pid) and age < STALE_SECONDS


def _process_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no safe check (os.kill(pid, 0) would signal the process on Windows): go by age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _recover(models_dir: Path, folder: Path, staged_name: str) -> str | None:
    entry_path = folder / "registry.json"
    try:
        entry = json.loads(entry_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        entry = None
    if not isinstance(entry, dict):
        shutil.rmtree(folder, ignore_errors=True)
        return None  # an unfinished registration: its source file is untouched, nothing was lost
    taken = {p.name.casefold() for p in models_dir.iterdir() if not p.name.startswith(".")}
    recorded = entry.get("name") if isinstance(entry.get("name"), str) else None
    name = next((n for n in (recorded, staged_name) if n and n.casefold() not in taken), None)
    if name is None:
        return (f"{folder} holds the model {recorded or staged_name} from an interrupted rename, but that name "
                "is taken; move the folder's files elsewhere and import the .pth file under another name")
    _settle_files(folder, name, entry, models_dir / name)
    os.replace(folder, models_dir / name)
    return f"put back the model {name} (its rename or import was interrupted)"


def _settle_files(folder: Path, name: str, entry: dict, final_dir: Path) -> None:
    """Give the weights and config files ``name``'s names and point the config at the weights."""
    weights_ref = entry.get("weights")
    if not (isinstance(weights_ref, str) and Path(weights_ref).is_absolute()):
        weights = sorted(folder.glob("*.pth"))
        wanted = folder / f"{name}.pth"
        if not wanted.exists() and len(weights) == 1:
            os.replace(weights[0], wanted)
        weights_ref = wanted.name
    configs = sorted(folder.glob("*.yaml"))
    wanted_yaml = folder / f"{name}.yaml"
    source_yaml = wanted_yaml if wanted_yaml.exists() else (configs[0] if configs else None)
    if source_yaml is not None:
        try:
            model_path = weights_ref if Path(weights_ref).is_absolute() else str(final_dir / weights_ref)
            ModelConfig.from_yaml(source_yaml).with_model_path(model_path, None).to_yaml(wanted_yaml)
        except ConfigError as error:
            log.warning("kept the config of %s as it was: %s", name, error)
            if source_yaml != wanted_yaml:
                os.replace(source_yaml, wanted_yaml)
        for other in configs:
            if other != wanted_yaml:
                other.unlink(missing_ok=True)
    entry.update(name=name, weights=weights_ref)
    write_entry_json(folder / "registry.json", entry)
