"""``empanada-desktop train``: train a new model (random or CEM1.5M initialisation), headless.

The same loop, run folder, checkpoints, resume, Ctrl-C and export as ``finetune``; under
``torchrun --nproc-per-node N -m empanada_desktop train ...`` the processes share the work.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from empanada_desktop.backend.finetune.config import LAYER_CHOICES, PRECISIONS
from empanada_desktop.backend.finetune.train_config import (
    ARCHITECTURE_CHOICES,
    ENCODER_CHOICES,
    train_default_of,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a new model from your labelled patches (random or CEM1.5M initialisation)",
        description=(
            "Train a new model on one or more training folders in empanada's layout "
            "(<source>/images/*.tiff + <source>/masks/*.tiff) and register it under --name. "
            "Classes are id,name,kind lines (kind instance or semantic); with several classes the "
            "masks hold class * label-divisor + instance."
        ),
    )
    default = train_default_of
    parser.add_argument("--architecture", choices=ARCHITECTURE_CHOICES, default=default("architecture"))
    parser.add_argument("--encoder", choices=ENCODER_CHOICES, default=default("encoder"),
                        help=f"default {default('encoder')}; CEM initialisation needs resnet50")
    parser.add_argument("--init", nargs="+", default=[default("init")], metavar="random|cem [FILE]",
                        help="random (default) or cem: CEM1.5M SwAV ResNet-50 weights; give the file "
                             "(cem1.5m_swav_resnet50_200ep_balanced.pth.tar) once and it is imported")
    parser.add_argument("--classes", nargs="+", default=[c.to_text() for c in default("classes")],
                        metavar="ID,NAME,KIND", help="e.g. 1,mito,instance 2,er,semantic (default 1,object,instance)")
    parser.add_argument("--label-divisor", type=int, default=default("label_divisor"),
                        help=f"panoptic ids class * divisor + instance (default {default('label_divisor')})")
    parser.add_argument("--train", "--train-dir", dest="train", type=Path, action="append", default=[], metavar="DIR",
                        help="training folder; repeat for several (sources are weighted, see --weight-gamma)")
    parser.add_argument("--val", "--val-dir", dest="val", type=Path, metavar="DIR", help="validation folder")
    parser.add_argument("--layers", choices=LAYER_CHOICES, default=default("layers"),
                        help="encoder stages to train when starting from CEM weights (default all)")
    parser.add_argument("--iterations", type=int, default=default("iterations"),
                        help=f"optimiser steps (default {default('iterations')})")
    parser.add_argument("--patch-size", type=int, default=default("patch_size"), help="patch side in px")
    parser.add_argument("--batch-size", type=int, default=default("batch_size"),
                        help="patches per step over all processes (default 16)")
    parser.add_argument("--weight-gamma", type=float, default=None,
                        help="per-source sampling exponent: a source's share grows as n**(1-gamma) (default 0)")
    parser.add_argument("--device", default=default("device"), help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--name", "--new-name", dest="new_name", help="name of the new model")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR", help="run folder (default: app home/runs/NAME-time)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument("--from-config", type=Path, metavar="FILE",
                        help="all settings from a YAML with a 'train:' or 'finetune:' section (the app's launcher)")
    parser.add_argument("--seed", type=int, default=default("seed"))
    parser.add_argument("--precision", choices=PRECISIONS, default=default("precision"))
    parser.add_argument("--checkpoint-every", type=int, default=default("checkpoint_every"), metavar="N")
    parser.add_argument("--frozen-int8", choices=("auto", "on", "off"), default=default("frozen_int8"),
                        help="run the frozen encoder layers in int8 (auto: on a CPU training in float32, "
                             "or in bf16 where VNNI makes int8 faster)")
    parser.add_argument("--duplicate-patches", action="store_true",
                        help="allow fewer images than the batch size by repeating patches")
    parser.add_argument("--no-register", dest="register", action="store_false",
                        help="only export NAME.pth/.yaml into the run folder")
    parser.set_defaults(handler=run_train)


def _init_from_args(values: list[str]) -> tuple[str, Path | None]:
    from empanada_desktop.core.errors import ConfigError

    kind = values[0] if values else "random"
    if kind == "random" and len(values) == 1:
        return "random", None
    if kind == "cem" and len(values) <= 2:
        return "cem", Path(values[1]) if len(values) == 2 else None
    raise ConfigError(f"--init {' '.join(values)}: use --init random, --init cem FILE (first time) or --init cem.")


def config_from_args(args: argparse.Namespace):
    from empanada_desktop.backend.finetune.run_folder import resume_config
    from empanada_desktop.backend.finetune.train_config import TrainConfig
    from empanada_desktop.core.errors import ConfigError

    if args.resume is not None:
        return resume_config(args.resume, device=args.device)
    if args.from_config is not None:
        from empanada_desktop.backend.finetune.launch import read_launch_config

        return read_launch_config(args.from_config)
    missing = [flag for flag, value in (("--train", args.train), ("--name", args.new_name)) if not value]
    if missing:
        raise ConfigError(f"train needs {', '.join(missing)} (or --resume RUN_DIR to continue a run).")
    init, init_file = _init_from_args(args.init)
    config = TrainConfig(
        architecture=args.architecture, encoder=args.encoder, init=init, init_file=init_file,
        classes=tuple(args.classes), label_divisor=args.label_divisor, train_dirs=tuple(args.train), val_dir=args.val,
        layers=args.layers, iterations=args.iterations, patch_size=args.patch_size, batch_size=args.batch_size,
        weight_gamma=args.weight_gamma, device=args.device, new_name=args.new_name, out_dir=args.out,
        seed=args.seed, precision=args.precision, checkpoint_every=args.checkpoint_every,
        frozen_int8=args.frozen_int8, duplicate_patches=args.duplicate_patches, register=args.register,
    )
    if init_file is not None and os.environ.get("RANK", "0") == "0":
        # Imported once into the app home (rank 0 under torchrun); this run reads the file given.
        from empanada_desktop.backend.finetune.new_model import import_cem

        copy = import_cem(init_file)
        print(f"imported the CEM1.5M weights {init_file} as {copy}; next time --init cem is enough.", flush=True)
    return config


def run_train(args: argparse.Namespace, stop=None) -> int:
    from empanada_desktop.cli.finetune import drive

    return drive(config_from_args(args), stop, command="train")
