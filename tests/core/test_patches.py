"""Patch geometry: planes, random non-overlapping patches, points, flipbooks, crops."""

from __future__ import annotations

import numpy as np
import pytest

from empanada_desktop.core import patches as P


def test_plane_shape():
    assert P.plane_shape((4, 5, 6), "xy") == (4, 5, 6)
    assert P.plane_shape((4, 5, 6), "xz") == (5, 4, 6)
    assert P.plane_shape((4, 5, 6), "yz") == (6, 4, 5)
    with pytest.raises(ValueError):
        P.plane_shape((4, 5, 6), "zz")


def test_random_patches_fit_and_do_not_overlap():
    rng = np.random.default_rng(0)
    boxes = P.random_patches((10, 100, 120), 6, 32, rng)
    assert len(boxes) == 6
    for a in boxes:
        assert 0 <= a.row <= 100 - 32 and 0 <= a.col <= 120 - 32 and 0 <= a.index < 10
        assert not any(a.overlaps(b) for b in boxes if b is not a)
    # an image smaller than the patch gives patches of the image's size
    small = P.random_patches((1, 20, 30), 1, 256, rng)
    assert small[0].size == 20
    # only one slice, several planes
    boxes = P.random_patches((40, 40, 40), 5, 8, rng, planes=("xy", "xz", "yz"), index=3)
    assert {b.index for b in boxes} == {3}
    # padded 2D stack: patches stay inside each image's real size
    boxes = P.random_patches((2, 100, 100), 10, 16, rng, valid_shapes=[(20, 20), (100, 100)])
    assert all(b.row + b.size <= 20 and b.col + b.size <= 20 for b in boxes if b.index == 0)


def test_patches_at_points_are_centred_and_clamped():
    boxes = P.patches_at_points((3, 50, 60), [("xy", 1, 25, 30), ("xy", 2, 0, 0)], 20)
    assert boxes[0] == P.PatchBox("xy", 1, 15, 20, 20)
    assert boxes[1] == P.PatchBox("xy", 2, 0, 0, 20)
    some = P.patches_at_points((3, 50, 60), [("xy", 0, 10, 10)] * 5, 8, n=2, rng=np.random.default_rng(1))
    assert len(some) == 2


def test_flipbooks_and_crops_read_the_right_pixels():
    volume = np.arange(6 * 8 * 10).reshape(6, 8, 10)
    assert P.flipbook_indices(0, 6) == [0, 0, 0, 1, 2]
    assert P.flipbook_indices(3, 6) == [1, 2, 3, 4, 5]
    box = P.PatchBox("xy", 0, 2, 3, 4)
    book = P.crop_flipbook(volume, box)
    assert book.shape == (5, 4, 4)
    assert (book[2] == volume[0, 2:6, 3:7]).all() and (book[4] == volume[2, 2:6, 3:7]).all()
    assert (P.crop(volume, P.PatchBox("xz", 4, 1, 2, 3)) == volume[1:4, 4, 2:5]).all()
    assert (P.crop(volume, P.PatchBox("yz", 7, 0, 1, 3)) == volume[0:3, 1:4, 7]).all()
    assert P.patch_name("cell", box) == "cell-xy0000-r2-c3-s4"
