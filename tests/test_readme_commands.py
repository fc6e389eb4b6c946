"""Every ``empanada-desktop ...`` command the README shows is accepted as shown (issue 18:
``--demo`` once failed with "unrecognized arguments")."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from empanada_desktop import cli
from empanada_desktop.cli import display, gui

README = Path(__file__).parents[1] / "README.md"


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("empanada-desktop"):
                commands.append(line)
    inline = re.findall(r"`(empanada-desktop(?: [^`]*)?)`", README.read_text(encoding="utf-8"))
    return sorted(set(commands + [c for c in inline if "<" not in c]))


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 15


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_is_accepted(command, monkeypatch):
    argv = shlex.split(command.replace("[", "").replace("]", ""))[1:]
    opened = []
    monkeypatch.setattr(gui, "launch_gui", lambda files: opened.append(files) or 0)
    monkeypatch.setattr(display, "display_problem", lambda: None)
    parser = cli.build_parser()
    commands = cli._command_names(parser)
    first = next((a for a in argv if a not in ("-v", "--verbose")), None)
    if first in (None, "--demo", "FILE"):
        if first == "FILE":
            monkeypatch.setattr(gui.Path, "exists", lambda self: True)  # stands for a real file
        assert cli.main(argv) == 0 and opened, command
        return
    if not first.startswith("-") and first not in commands:  # shown as a typo: refused in one line
        assert cli.main(argv) == cli.EXIT_USER_ERROR and not opened, command
        return
    if first in ("--help", "--version"):
        return
    parser.parse_args(argv)  # SystemExit (usage error) fails the test
