"""Label operations: painting, flood fill, components, merge/delete, distance, split."""

from __future__ import annotations

import numpy as np
import pytest

from empanada_desktop.core import labels as L
from empanada_desktop.core.errors import UserError


def test_paint_disk_and_line_return_boxes():
    lab = np.zeros((20, 20), np.int32)
    box = L.paint_disk(lab, (10, 10), 5, 3)
    assert box == (8, 13, 8, 13)
    assert lab[10, 10] == 3 and lab[8, 8] == 0  # round, not square
    assert L.paint_disk(lab, (-10, -10), 3, 1) is None
    box = L.paint_line(lab, (2, 2), (2, 17), 1, 4)
    assert (lab[2, 2:18] == 4).all() and box == (2, 3, 2, 18)
    clipped = L.paint_disk(lab, (0, 19), 5, 5)
    assert clipped == (0, 3, 17, 20)


def test_flood_fill_stays_inside_a_closed_contour():
    lab = np.zeros((12, 12), np.int32)
    lab[2, 2:9] = lab[8, 2:9] = 1
    lab[2:9, 2] = lab[2:9, 8] = 1
    box = L.flood_fill(lab, (5, 5), 2)
    assert box == (3, 8, 3, 8)
    assert (lab[3:8, 3:8] == 2).all() and lab[0, 0] == 0 and lab[2, 2] == 1
    # a diagonal gap leaks with 8-connectivity but not with 4
    lab = np.zeros((5, 5), np.int32)
    lab[2, :] = 1
    lab[2, 2] = 0
    lab[1, 2] = 1
    lab[3, 1] = 1
    region4 = L.flood_region(lab, (0, 0))
    assert not region4[4, 4]
    assert L.flood_fill(lab, (0, 0), 0) is None  # same value: nothing to do


def test_flood_region_snake_and_all_true_rows():
    lab = np.zeros((7, 7), np.int32)
    lab[1, 0:6] = 1
    lab[3, 1:7] = 1
    lab[5, 0:6] = 1
    region = L.flood_region(lab, (0, 0))
    assert region.sum() == (lab == 0).sum()  # the snake-shaped background is one region
    assert L.flood_region(np.zeros((3, 3), np.int32), (1, 1)).all()


def test_connected_components_4_and_8():
    mask = np.array([[1, 1, 0, 0, 1],
                     [0, 1, 0, 1, 1],
                     [0, 0, 1, 0, 0],
                     [1, 0, 0, 0, 1]], bool)
    four = L.connected_components(mask)
    assert four.max() == 5
    assert four[0, 0] == four[1, 1] and four[0, 4] == four[1, 3]
    eight = L.connected_components(mask, connectivity=8)
    assert eight.max() == 3  # the diagonal joins the first two groups through (2, 2)
    u = np.zeros((4, 5), bool)
    u[:, 0] = u[:, 4] = u[3, :] = True  # a U joins its arms only at the bottom row
    assert L.connected_components(u).max() == 1


def test_merge_delete_next_free_relabel():
    lab = np.array([[0, 2, 2], [5, 5, 0], [7, 0, 9]], np.int32)
    assert L.next_free_label(lab) == 10
    assert L.merge_labels(lab, {5, 7, 0}) == 5
    assert (lab == 7).sum() == 0 and (lab == 5).sum() == 3
    with pytest.raises(UserError):
        L.merge_labels(lab, [5])
    assert L.delete_label(lab, 2) == 2
    with pytest.raises(UserError):
        L.delete_label(lab, 0)
    new, lut = L.relabel_sequential(lab)
    assert lut == {5: 1, 9: 2}
    assert new.tolist() == [[0, 0, 0], [1, 1, 0], [1, 0, 2]]


def test_chamfer_distance_of_a_square():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    d = L.chamfer_distance(mask)
    assert d[0, 0] == 0 and d[1, 1] == pytest.approx(1.0)
    assert d[4, 4] == pytest.approx(4.0)  # 4 steps to the border, each weight 3 / 3
    assert d[1, 4] == pytest.approx(1.0)
    assert np.allclose(d, d.T) and np.allclose(d, d[::-1, ::-1])


def test_split_dumbbell_cuts_at_the_neck():
    lab = np.zeros((20, 40), np.int32)
    yy, xx = np.mgrid[0:20, 0:40]
    lab[(yy - 10) ** 2 + (xx - 9) ** 2 <= 64] = 4
    lab[(yy - 10) ** 2 + (xx - 30) ** 2 <= 64] = 4
    lab[9:12, 9:31] = 4  # thin neck
    lab[0, 0] = 6
    before = (lab == 4).sum()
    ids, box = L.split_label(lab, 4, [(10, 9), (10, 30)])
    assert ids == [4, 7]
    assert box[2] <= 1 and box[3] >= 39
    assert (lab == 4).sum() + (lab == 7).sum() == before
    assert (lab[:, :17] == 7).sum() == 0 and (lab[:, 22:] == 4).sum() == 0
    with pytest.raises(UserError):
        L.split_label(lab, 4, [(10, 9)])
    with pytest.raises(UserError):
        L.split_label(lab, 0, [(1, 1), (2, 2)])
