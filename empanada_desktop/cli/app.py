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
    parser.add_argument("--size", metavar="WxH", type=_size,
                        help="screen size, e.g. 1366x768: windows are rendered at this size and "
                             "a screen that does not fit is an error")
    parser.set_defaults(handler=_screenshots)


def _screenshots(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from empanada_desktop.core.errors import UserError
    from empanada_desktop.ui.shell.screenshots import ScreenTooSmall, render_all

    try:
        written = render_all(args.out_dir, args.only or None, screen=args.size)
    except ScreenTooSmall as error:
        raise UserError(f"does not fit {args.size[0]}x{args.size[1]}: {error}") from None
    for path in written:
        print(path)
    return 0 if written else 1


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 1366x768") from None
    if width < 200 or height < 200:
        raise argparse.ArgumentTypeError(f"{text!r} is too small; give a screen size like 1366x768")
    return width, height
