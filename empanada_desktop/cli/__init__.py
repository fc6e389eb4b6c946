"""Command line: ``empanada-desktop [FILE]`` opens the app; subcommands run headless.

Each subcommand lives in its own module of this package with a ``register(subparsers)``
function that adds its parser and sets ``handler`` (a function of the parsed arguments that
returns the exit status). Problems the user can fix are raised as ``UserError`` and printed
without a traceback; so are OS errors (disk full, read-only folder, no permission) and torch's
errors for a failed write, as one line naming the path and the remedy. ``--debug`` shows the
traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from empanada_desktop import __version__
from empanada_desktop.core.errors import UserError, describe_os_error, is_write_failure

# Modules of this package that add subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "empanada_desktop.cli.models",
    "empanada_desktop.cli.app",
    "empanada_desktop.cli.finetune",
    "empanada_desktop.cli.train",
    "empanada_desktop.cli.infer",
    "empanada_desktop.cli.suggest",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_UNEXPECTED = 1
_GLOBAL_FLAGS = ("-v", "--verbose", "--debug")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="empanada-desktop",
        description=(
            "Finetune empanada segmentation models (MitoNet and friends) on your own EM images. "
            "Without a command, opens the desktop app: empanada-desktop [FILE | --demo] opens FILE "
            "(an image, a stack or a folder of 2D images) or the demo volume in it."
        ),
    )
    parser.add_argument("--demo", action="store_true", help="open the app on the demo volume")
    parser.add_argument("--version", action="version", version=f"empanada-desktop {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error as well as its message")
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
    first = next((a for a in argv if a not in _GLOBAL_FLAGS), None)
    commands = _command_names(parser)
    if first is None or first == "--demo" or (not first.startswith("-") and first not in commands):
        # No command: the desktop app, with any files given.
        from empanada_desktop.cli.gui import gui_problem, launch_gui

        problem = gui_problem(first, commands)
        if problem is not None:
            print(f"error: {problem}", file=sys.stderr)
            return EXIT_USER_ERROR
        return launch_gui([a for a in argv if a not in _GLOBAL_FLAGS])
    debug = "--debug" in argv  # accepted before or after the command
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        return _report(args, f"error: {error}", EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - no traceback unless --debug, whatever went wrong
        if is_write_failure(error):
            return _report(args, f"error: {describe_os_error(error)}", EXIT_USER_ERROR)
        text = str(error).strip()
        detail = f": {text.splitlines()[0]}" if text else ""
        return _report(args, f"error: unexpected {type(error).__name__}{detail} (run again with --debug to "
                       "see where, and please report it)", EXIT_UNEXPECTED)


def _report(args: argparse.Namespace, line: str, status: int) -> int:
    """Print ``line`` (with the traceback first under ``--debug``) and return ``status``."""
    if getattr(args, "debug", False):
        traceback.print_exc(file=sys.stderr)
    print(line, file=sys.stderr)
    return status
