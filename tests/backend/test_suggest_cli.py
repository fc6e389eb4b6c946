"""``empanada-desktop suggest``: training-set layout, suggestions.csv, no overwriting, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from empanada_desktop.cli import main
from empanada_desktop.core.dataset import scan_dataset
from empanada_desktop.core.suggestions_file import parse_patch_name


@pytest.fixture
def stack_file(tmp_path):
    path = tmp_path / "cells.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, rng.integers(0, 255, (3, 96, 96)).astype(np.uint8), photometric="minisblack")
    return path


def rows_of(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_suggest_writes_the_training_set_layout_and_the_csv(registered_tiny_model, stack_file, tmp_path, capsys):
    out = tmp_path / "set"
    args = ["suggest", "--model", "tiny", str(stack_file), "-n", "3", "--patch-size", "32", "-o", str(out),
            "--tta", "2", "--device", "cpu", "--map", str(tmp_path / "map.tif")]
    assert main(args) == 0
    report = scan_dataset(out)
    assert report.problems == [] and report.counts == {"cells": 3}
    rows = rows_of(out / "suggestions.csv")
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    assert {"score", "plane", "index", "row", "col", "size", "z", "y", "x", "threshold", "tta", "centers"} <= set(rows[0])
    for row in rows:
        stem, box = parse_patch_name(row["name"])
        assert stem == "cells" and box.size == 32 and (box.index, box.row, box.col) == (
            int(row["index"]), int(row["row"]), int(row["col"]))
        image = tifffile.imread(out / "cells" / "images" / row["name"])
        mask = tifffile.imread(out / "cells" / "masks" / row["name"])
        assert image.shape == mask.shape == (32, 32) and mask.dtype == np.int32
        original = tifffile.imread(stack_file)[box.index, box.row : box.row + 32, box.col : box.col + 32]
        assert np.array_equal(image, original)
    assert tifffile.imread(tmp_path / "map.tif").shape == (96, 96)
    assert "wrote 3 patches" in capsys.readouterr().err

    # A second round into the same set: the first round's patches are not suggested again,
    # nothing is overwritten, and the list goes to suggestions-2.csv.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(args[:-2]) == 0
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert all(after[p] == t for p, t in before.items())
    second = rows_of(out / "suggestions-2.csv")
    first_boxes = {parse_patch_name(r["name"])[1] for r in rows}
    assert not first_boxes & {parse_patch_name(r["name"])[1] for r in second}
    assert scan_dataset(out).counts == {"cells": 6}


def test_suggest_refuses_bad_input(registered_tiny_model, stack_file, tmp_path, capsys):
    base = ["suggest", "--model", "tiny", "-n", "2", "--patch-size", "32", "--tta", "1", "--device", "cpu"]
    assert main(base + [str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(base[:5] + ["--patch-size", "512", "--tta", "1", "--device", "cpu", str(stack_file),
                            "-o", str(tmp_path / "o")]) == 2
    assert "larger than" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(base + [str(stack_file), "-o", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "src" / "images").mkdir(parents=True)
    assert main(base + [str(stack_file), "-o", str(tmp_path / "src")]) == 2
    assert "single source folder" in capsys.readouterr().err
    assert main(base + [str(stack_file), "-o", str(tmp_path / "o"), "--map", str(tmp_path / "m.png")]) == 2
    assert "--map" in capsys.readouterr().err
    assert main(base + ["--model", "nope", str(stack_file), "-o", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()
