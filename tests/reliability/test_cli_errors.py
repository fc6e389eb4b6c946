"""Probes 1 and 6: the CLI never replaces an input, never overwrites unasked, and turns full or
read-only disks into one line naming the path and the remedy (exit 2), a traceback only with
--debug. Each probe also checks what is on disk afterwards."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import tifffile
from reliability_helpers import leftovers, run_cli

from empanada_desktop.cli import main
from empanada_desktop.core.errors import describe_os_error, is_write_failure



@pytest.fixture
def image(tmp_path):
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8))
    return path


def _one_line_error(captured) -> str:
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_describe_os_error_names_the_path_and_the_remedy(tmp_path):
    full = describe_os_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a.tif")
    assert str(tmp_path / "a.tif") in full and "disk is full" in full and "Free some space" in full
    read_only = describe_os_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "b")))
    assert str(tmp_path / "b") in read_only and "read-only" in read_only and "writable disk" in read_only
    denied = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x/y"))
    assert "/x/y" in denied and "permission denied" in denied and "write access" in denied
    torch_error = RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/3: file write failed")
    assert is_write_failure(torch_error) and not is_write_failure(RuntimeError("shape mismatch"))
    assert str(tmp_path / "c.pt") in describe_os_error(torch_error, tmp_path / "c.pt")


@pytest.mark.parametrize("dimensions", [2, 3])
def test_infer_refuses_to_write_over_its_input(tiny, tmp_path, capsys, dimensions):
    shape = (64, 64) if dimensions == 2 else (4, 64, 64)
    source = tmp_path / "x.tif"
    tifffile.imwrite(source, (np.random.default_rng(1).random(shape) * 255).astype(np.uint8), photometric="minisblack")
    before = source.read_bytes()
    link = tmp_path / "link.tif"
    link.symlink_to(source)
    hard = tmp_path / "hard.tif"
    os.link(source, hard)
    for output, extra in ((source, []), (source, ["--overwrite"]), (link, ["--overwrite"]), (hard, ["--overwrite"])):
        status = main(["infer", "--model", tiny, str(source), "-o", str(output), "--device", "cpu", *extra])
        line = _one_line_error(capsys.readouterr())
        assert status == 2 and "is the input" in line and "destroy your image" in line
    assert source.read_bytes() == before


def test_infer_overwrites_an_existing_file_only_when_asked(tiny, image, tmp_path, capsys):
    output = tmp_path / "labels.tif"
    output.write_bytes(b"the user's old labels")
    assert main(["infer", "--model", tiny, str(image), "-o", str(output), "--device", "cpu"]) == 2
    line = _one_line_error(capsys.readouterr())
    assert str(output) in line and "--overwrite" in line
    assert output.read_bytes() == b"the user's old labels"
    assert main(["infer", "--model", tiny, str(image), "-o", str(output), "--device", "cpu", "--overwrite"]) == 0
    assert tifffile.imread(output).shape == (64, 64)


@pytest.mark.parametrize("dimensions", [2, 3])
def test_infer_onto_a_full_disk_is_one_line_and_leaves_nothing(tiny, tmp_path, small_disk, capsys, dimensions):
    shape = (64, 64) if dimensions == 2 else (6, 64, 64)
    source = tmp_path / "x.tif"
    tifffile.imwrite(source, (np.random.default_rng(2).random(shape) * 255).astype(np.uint8), photometric="minisblack")
    disk = small_disk(8)
    disk.fill()
    output = disk.path / "labels.tif"
    status = main(["infer", "--model", tiny, str(source), "-o", str(output), "--device", "cpu"])
    line = _one_line_error(capsys.readouterr())
    assert status == 2 and str(disk.path) in line
    assert "disk is full" in line or "not enough free disk space" in line
    assert not output.exists() and leftovers(disk.path) == []


def test_infer_onto_a_read_only_disk(tiny, image, read_only_disk, capsys):
    output = read_only_disk.path / "folder" / "labels.tif"
    status = main(["infer", "--model", tiny, str(image), "-o", str(output), "--device", "cpu"])
    line = _one_line_error(capsys.readouterr())
    assert status == 2 and "read-only" in line and str(read_only_disk.path) in line
    assert not output.exists()


def test_models_import_into_a_full_app_home(tiny, tmp_path, small_disk, monkeypatch, capsys):
    from empanada_desktop.core.registry import ModelRegistry

    source = tmp_path / "tiny_copy.pth"
    source.write_bytes(ModelRegistry().get(tiny).weights_path.read_bytes())
    disk = small_disk(128)
    home = disk.path / "home"
    home.mkdir()
    monkeypatch.setenv("EMPANADA_DESKTOP_HOME", str(home))
    ModelRegistry()  # the models folder exists before the disk fills
    disk.fill()
    status = main(["models", "import", str(source), "--name", "Copy", "--like", "MitoNet_v1"])
    line = _one_line_error(capsys.readouterr())
    assert status == 2 and "disk is full" in line and str(home) in line
    disk.free_up()
    assert "Copy" not in ModelRegistry().names()
    assert leftovers(home) == []


def test_models_export_to_a_read_only_folder(tiny, read_only_disk, capsys):
    status = main(["models", "export", tiny, str(read_only_disk.path / "folder")])
    line = _one_line_error(capsys.readouterr())
    assert status == 2 and "read-only" in line and str(read_only_disk.path) in line
    assert sorted(p.name for p in (read_only_disk.path / "folder").iterdir()) == []


def test_debug_shows_the_traceback_and_the_same_line(tiny, read_only_disk, capsys):
    arguments = ["models", "export", tiny, str(read_only_disk.path / "folder")]
    assert main(["--debug", *arguments]) == 2
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "error: cannot write" in captured.err
    assert main([*arguments, "--debug"]) == 2  # also after the command
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch, capsys):
    import empanada_desktop.cli.models as models_cli

    def broken(args):
        raise KeyError("surprise")

    monkeypatch.setattr(models_cli.ModelRegistry, "list", lambda self: broken(None))
    assert main(["models", "list"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "unexpected KeyError" in captured.err and "--debug" in captured.err


def test_cli_subprocess_full_disk_exit_status(tiny, tmp_path, small_disk, app_home):
    disk = small_disk(8)
    if not disk.real:
        pytest.skip("needs a real small disk (mount not permitted here)")
    source = tmp_path / "x.tif"
    tifffile.imwrite(source, np.zeros((64, 64), np.uint8))
    disk.fill()
    result = run_cli("infer", "--model", tiny, str(source), "-o", str(disk.path / "y.tif"), "--device", "cpu")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and str(disk.path) in result.stderr
