"""``empanada-desktop screenshots DIR``: render every main screen to PNG, offscreen."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "screenshots", help="render every main screen and panel (with demo data) to PNG files",
        description="Render every registered screen of the desktop app, offscreen, to DIR/<name>.png.")
    parser.add_argument("out_dir", metavar="DIR", help="folder for the PNG files (created if needed)")
    parser.add_argument("--only", nargs="*", metavar="NAME", help="render only these screens")
    parser.set_defaults(handler=_screenshots)


def _screenshots(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from empanada_desktop.ui.shell.screenshots import render_all

    written = render_all(args.out_dir, args.only or None)
    for path in written:
        print(path)
    return 0 if written else 1
