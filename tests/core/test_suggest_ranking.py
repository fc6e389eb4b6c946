"""Ranking suggested patches: labelled patches excluded, picks spread out, the CSV and names."""

from __future__ import annotations

import numpy as np
import pytest

from empanada_desktop.core.errors import DatasetError
from empanada_desktop.core.patches import PatchBox, patch_name
from empanada_desktop.core.suggest_ranking import (
    Candidate,
    box_origin_zyx,
    grid_positions,
    overlap_fraction,
    rank_patches,
    window_means,
)
from empanada_desktop.core.suggestions_file import (
    free_csv_path,
    labelled_boxes,
    parse_patch_name,
    read_suggestions_csv,
    suggestion_row,
    write_suggestions_csv,
)


def grid_candidates(score_fn, size=32, stride=8, extent=128, index=0, features=None):
    out = []
    for row in grid_positions(extent, size, stride):
        for col in grid_positions(extent, size, stride):
            box = PatchBox("xy", index, row, col, size)
            out.append(Candidate(box, float(score_fn(row, col)), None if features is None else features(row, col)))
    return out


def test_overlap_fraction_and_origins():
    a = PatchBox("xy", 0, 0, 0, 32)
    assert overlap_fraction(a, PatchBox("xy", 0, 16, 0, 32)) == 0.5
    assert overlap_fraction(a, PatchBox("xy", 0, 16, 16, 32)) == 0.25
    assert overlap_fraction(a, PatchBox("xy", 1, 0, 0, 32)) == 0.0
    assert overlap_fraction(a, PatchBox("xz", 0, 0, 0, 32)) == 0.0
    assert overlap_fraction(a, PatchBox("xy", 0, 32, 0, 32)) == 0.0
    assert box_origin_zyx(PatchBox("xy", 3, 10, 20, 8)) == (3, 10, 20)
    assert box_origin_zyx(PatchBox("xz", 3, 10, 20, 8)) == (10, 3, 20)
    assert box_origin_zyx(PatchBox("yz", 3, 10, 20, 8)) == (10, 20, 3)


def test_grid_positions_cover_the_end_and_window_means_are_exact():
    assert grid_positions(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert grid_positions(32, 32, 16) == [0]
    with pytest.raises(ValueError):
        grid_positions(10, 32, 16)
    values = np.random.default_rng(0).random((50, 60))
    rows, cols = [0, 7, 18], [3, 28]
    means = window_means(values, 20, rows, cols)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            assert means[i, j] == pytest.approx(values[r : r + 20, c : c + 20].mean())


def test_ranking_excludes_labelled_patches():
    # The most uncertain place is at (64, 64); it is already labelled.
    candidates = grid_candidates(lambda r, c: 1.0 - (abs(r - 64) + abs(c - 64)) / 256)
    labelled = [PatchBox("xy", 0, 56, 56, 32)]
    for max_overlap in (0.0, 0.25):
        order = rank_patches(candidates, 6, labelled=labelled, max_overlap=max_overlap)
        assert len(order) == 6
        for i in order:
            assert overlap_fraction(candidates[i].box, labelled[0]) <= max_overlap
    # without the labelled patch, the best place is picked first
    assert candidates[rank_patches(candidates, 1)[0]].box == PatchBox("xy", 0, 64, 64, 32)


@pytest.mark.parametrize("max_overlap", [0.0, 0.25, 0.5])
def test_picked_patches_do_not_overlap_more_than_allowed(max_overlap):
    rng = np.random.default_rng(1)
    candidates = grid_candidates(lambda r, c: rng.random() + (2.0 if r < 40 and c < 40 else 0.0))
    order = rank_patches(candidates, 6, max_overlap=max_overlap, diversity=0.0)
    assert len(order) == 6
    boxes = [candidates[i].box for i in order]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert overlap_fraction(a, b) <= max_overlap


def test_diversity_spreads_picks_over_feature_clusters():
    # Two kinds of content: A (a left strip, slightly more uncertain) and B (the rest).
    def features(row, col):
        return np.array([1.0, 0.0]) if col < 16 else np.array([0.0, 1.0])

    candidates = grid_candidates(lambda r, c: 1.0 if c < 16 else 0.8, features=features)
    kinds = lambda order: [int(candidates[i].box.col >= 16) for i in order]  # noqa: E731
    # by uncertainty alone, the first picks all come from A
    assert kinds(rank_patches(candidates, 3, diversity=0.0))[:3] == [0, 0, 0]
    # with diversity on features only, the second pick is from B
    assert kinds(rank_patches(candidates, 2, diversity=0.5, spatial_weight=0.0)) == [0, 1]


def test_spatial_spread_without_features():
    candidates = grid_candidates(lambda r, c: 1.0)  # all equally uncertain
    order = rank_patches(candidates, 2, diversity=1.0)
    a, b = (candidates[i].box for i in order)
    assert abs(a.row - b.row) + abs(a.col - b.col) >= 96 + 96 - 16  # opposite corners


def test_ranking_edge_cases():
    assert rank_patches([], 3) == []
    candidates = grid_candidates(lambda r, c: 1.0, extent=32)
    assert rank_patches(candidates, 0) == []
    assert len(rank_patches(candidates, 5)) == 1  # one position only
    with pytest.raises(ValueError):
        rank_patches(candidates, 1, diversity=2.0)


def test_patch_names_parse_back():
    box = PatchBox("xz", 12, 64, 128, 256)
    name = patch_name("my.cells", box)
    assert parse_patch_name(name) == ("my.cells", box)
    assert parse_patch_name(name + ".tiff") == ("my.cells", box)
    assert parse_patch_name("patch_0001.tiff") is None


def test_labelled_boxes_from_a_training_set_folder(tmp_path):
    root = tmp_path / "set"
    box_a = PatchBox("xy", 0, 0, 0, 64)
    box_b = PatchBox("xy", 2, 64, 0, 64)
    for sub in ("images", "masks"):
        (root / "cells" / sub).mkdir(parents=True)
        (root / "cells" / sub / f"{patch_name('cells', box_a)}.tiff").write_bytes(b"")
        (root / "cells" / sub / f"{patch_name('other', box_b)}.tiff").write_bytes(b"")
    box_c = PatchBox("yz", 5, 10, 20, 64)
    write_suggestions_csv(root / "suggestions.csv", [suggestion_row(1, 0.5, "cells", "x.tiff", box_c, {"tta": 0.1})],
                          ["tta"])
    assert set(labelled_boxes([root, tmp_path / "missing"], "cells")) == {box_a, box_c}
    assert labelled_boxes([root], "other") == [box_b]
    assert free_csv_path(root).name == "suggestions-2.csv"
    with pytest.raises(DatasetError):
        write_suggestions_csv(root / "suggestions.csv", [])


def test_suggestions_csv_round_trip_and_errors(tmp_path):
    box = PatchBox("xz", 3, 10, 20, 32)
    path = write_suggestions_csv(tmp_path / "s.csv", [suggestion_row(1, 0.25, "img", "n.tiff", box, {"tta": 0.5})],
                                 ["tta"])
    text = path.read_text()
    assert text.splitlines()[0] == "rank,score,source,name,plane,index,row,col,size,z,y,x,tta"
    assert "1,0.25,img,n.tiff,xz,3,10,20,32,10,3,20,0.5" in text
    assert read_suggestions_csv(path) == [("img", box)]
    (tmp_path / "bad.csv").write_text("rank,plane\n1,zz\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_suggestions_csv(tmp_path / "bad.csv")
