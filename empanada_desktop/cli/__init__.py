"""Command line: ``empanada-desktop [FILE]`` opens the app; subcommands run headless.

Each subcommand lives in its own module of this package with a ``register(subparsers)``
function that adds its parser and sets ``handler`` (a function of the parsed arguments that
returns the exit status). Problems the user can fix are raised as ``UserError`` and printed
without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from empanada_desktop import __version__
from empanada_desktop.core.errors import UserError

# Modules of this package that add subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "empanada_desktop.cli.models",
    "empanada_desktop.cli.app",
    "empanada_desktop.cli.finetune",
    "empanada_desktop.cli.infer",
    "empanada_desktop.cli.suggest",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empanada-desktop",
        description=(
            "Finetune empanada segmentation models (MitoNet and friends) on your own EM images. "
            "Without a command, opens the desktop app (optionally on FILE)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"empanada-desktop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    first = next((a for a in argv if a not in ("-v", "--verbose")), None)
    if first is None or (not first.startswith("-") and first not in _command_names(parser)):
        # No command: the desktop app, with any files given.
        from empanada_desktop.cli.gui import launch_gui

        return launch_gui([a for a in argv if a not in ("-v", "--verbose")])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
