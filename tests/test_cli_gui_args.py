"""``empanada-desktop`` without a command: FILE and --demo open the app; a mistyped command or a
missing display gets one line instead of Qt's abort."""

from __future__ import annotations

import pytest

from empanada_desktop import cli
from empanada_desktop.cli import display, gui


@pytest.fixture
def launched(monkeypatch):
    calls = []
    monkeypatch.setattr(gui, "launch_gui", lambda files: calls.append(list(files)) or 0)
    monkeypatch.setattr(display, "display_problem", lambda: None)
    return calls


def test_demo_and_existing_file_open_the_app(launched, tmp_path):
    image = tmp_path / "stack.tif"
    image.write_bytes(b"")
    assert cli.main(["--demo"]) == 0
    assert cli.main([str(image)]) == 0
    assert cli.main([]) == 0
    assert launched == [["--demo"], [str(image)], []]


def test_a_dataset_inside_a_container_opens_the_app(launched, tmp_path):
    (tmp_path / "cell.h5").write_bytes(b"")
    assert cli.main([f"{tmp_path / 'cell.h5'}:/raw"]) == 0
    assert launched == [[f"{tmp_path / 'cell.h5'}:/raw"]]
    assert cli.main([f"{tmp_path / 'other.h5'}:/raw"]) == cli.EXIT_USER_ERROR  # no such file


@pytest.mark.parametrize(("word", "expected"), [
    ("finetun", "unknown command 'finetun'; did you mean 'finetune'?"),
    ("modles", "did you mean 'models'?"),
    ("missing.tif", "missing.tif does not exist"),
    ("zzz", "the commands are: "),
])
def test_unknown_word_is_a_one_line_error(launched, capsys, word, expected):
    assert cli.main([word]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert launched == []


def test_help_mentions_file_and_demo(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "--demo" in out and "FILE" in out


def test_no_display_says_commands_work_without_one():
    problem = display.display_problem(environ={}, platform="linux")
    assert "needs a desktop session" in problem and "--help" in problem
    assert display.display_problem(environ={"QT_QPA_PLATFORM": "offscreen"}, platform="linux") is None
    assert display.display_problem(environ={}, platform="darwin") is None


def test_missing_xcb_library_is_named_with_its_packages(monkeypatch):
    missing = [e for e in display.XCB_LIBRARIES if e[0] == "libxcb-icccm.so.4"]
    monkeypatch.setattr(display, "missing_xcb_libraries", lambda: missing)
    problem = display.display_problem(environ={"DISPLAY": ":0"}, platform="linux")
    assert "libxcb-icccm.so.4" in problem
    assert "apt install libxcb-icccm4" in problem and "dnf install xcb-util-wm" in problem


def test_missing_xcb_libraries_uses_the_loader():
    def fake_load(name):
        if name in ("libxcb-cursor.so.0", "libEGL.so.1"):
            raise OSError(name)

    missing = display.missing_xcb_libraries(load=fake_load)
    assert [lib for lib, _, _ in missing] == ["libxcb-cursor.so.0", "libEGL.so.1"]
