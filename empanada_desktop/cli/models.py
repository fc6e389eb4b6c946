"""``empanada-desktop models ...`` (list, info, import, export, rename, remove) and ``devices``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from empanada_desktop.core.errors import UserError
from empanada_desktop.core.registry import ModelRegistry

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    models = subparsers.add_parser(
        "models",
        help="list, import, export, rename and remove segmentation models",
        description=(
            "Manage the models the app can finetune and run. Built-in models (MitoNet_v1, ...) "
            "are listed even when their weights are not on this machine; import the named .pth "
            "file to install them. Models of an empanada-napari install (~/.empanada) are found "
            "and used in place."
        ),
    )
    actions = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="list all models and whether their weights are installed")
    listing.set_defaults(handler=_list)

    info = actions.add_parser("info", help="describe one model (classes, padding, parameters, ...)")
    info.add_argument("name")
    info.set_defaults(handler=_info)

    importing = actions.add_parser(
        "import",
        help="copy a TorchScript .pth into the app and register it",
        description=(
            "Check that FILE loads as a model, copy it into the app home and register it as NAME. "
            "The config comes from --config, --like, a built-in of the same name or file name "
            "(MitoNet_v1.pth), or a NAME.yaml next to the file."
        ),
    )
    importing.add_argument("file", type=Path)
    importing.add_argument("--name", required=True, help="name for the model (letters, digits, _ - .)")
    which = importing.add_mutually_exclusive_group()
    which.add_argument("--like", metavar="MODEL", help="take the config of this known model")
    which.add_argument("--config", type=Path, metavar="FILE.yaml", help="an empanada model config")
    importing.set_defaults(handler=_import)

    export = actions.add_parser(
        "export",
        help="write NAME.pth and NAME.yaml into DIR (loadable by empanada-napari)",
    )
    export.add_argument("name")
    export.add_argument("dir", type=Path)
    export.add_argument("--force", action="store_true", help="overwrite files already in DIR")
    export.set_defaults(handler=_export)

    rename = actions.add_parser("rename", help="rename a registered model")
    rename.add_argument("old")
    rename.add_argument("new")
    rename.set_defaults(handler=_rename)

    remove = actions.add_parser("remove", help="delete a registered model and its weights from the app home")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)

    devices = subparsers.add_parser("devices", help="list the devices that can train and run models")
    devices.set_defaults(handler=_devices)


def _status(model) -> str:
    if model.installed:
        return "installed"
    return model.missing_weights_hint or "weights not installed"


def _list(args: argparse.Namespace) -> int:
    registry = ModelRegistry()
    models = registry.list()
    width = max(len(m.name) for m in models) if models else 4
    print(f"{'NAME':<{width}}  {'SOURCE':<8}  STATUS")
    for model in models:
        print(f"{model.name:<{width}}  {model.source:<8}  {_status(model)}")
    for problem in registry.problems:
        print(f"warning: {problem}")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = ModelRegistry().describe(args.name)
    description = info.pop("description", "")
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "none"
        elif value is None:
            value = "-"
        print(f"{key.replace('_', ' ')}: {value}")
    if description:
        print(f"description: {description}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from empanada_desktop.backend.torchscript import verify_model_file

    model = ModelRegistry().import_weights(
        args.file, args.name, like=args.like, config_file=args.config, verify=verify_model_file
    )
    params = f", {model.parameters:,} parameters" if model.parameters else ""
    print(f"imported {model.name} ({model.size:,} bytes{params}) -> {model.weights_path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from empanada_desktop.core.model_export import ExportExistsError, export_pair

    model = ModelRegistry().get(args.name)
    try:
        pth, yaml_path = export_pair(model, args.dir, overwrite=args.force)
    except ExportExistsError as error:
        raise UserError(
            f"{', '.join(str(p) for p in error.existing)} already exists; choose another folder or add --force."
        ) from error
    print(f"exported {model.name}: {pth} and {yaml_path}")
    print("empanada-napari: use 'Register new model' with the .yaml file.")
    return 0


def _rename(args: argparse.Namespace) -> int:
    model = ModelRegistry().rename(args.old, args.new)
    print(f"renamed {args.old} to {model.name}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    registry = ModelRegistry()
    registry.remove(args.name)
    print(f"removed {args.name}")
    return 0


def _devices(args: argparse.Namespace) -> int:
    from empanada_desktop.backend.devices import list_devices

    for device in list_devices():
        details = [device.name]
        if device.memory_bytes:
            details.append(f"{device.memory_bytes / 2**30:.1f} GiB")
        if device.threads:
            details.append(f"{device.threads} threads")
        details.append("bfloat16" if device.bf16 else "no bfloat16")
        state = "available" if device.available else f"unavailable: {device.reason}"
        print(f"{device.id:<8} {state}  ({', '.join(details)})")
    return 0
