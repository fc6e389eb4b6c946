"""Choosing the pyramid level for a zoom, and where a slice is inside a level."""

from __future__ import annotations

from empanada_desktop.core.volumes.pyramid import choose_level, level_key, slice_scale

SHAPES = [(40, 20000, 20000), (40, 10000, 10000), (40, 5000, 5000), (20, 2500, 2500)]


def test_coarsest_level_at_most_the_pixels_per_screen_pixel():
    assert choose_level(SHAPES, "xy", 1.9, 1.9) == 0  # under 2 image pixels per screen pixel
    assert choose_level(SHAPES, "xy", 2.0, 2.0) == 1
    assert choose_level(SHAPES, "xy", 5.0, 5.0) == 2
    assert choose_level(SHAPES, "xy", 20.0, 20.0) == 3
    assert choose_level(SHAPES[:1], "xy", 20.0, 20.0) == 0


def test_xz_levels_ignore_an_axis_they_do_not_shrink():
    # z is stretched on screen (0.5 rows per screen pixel) but levels 1 and 2 keep every slice
    assert choose_level(SHAPES, "xz", 0.5, 5.0) == 2
    assert choose_level(SHAPES, "xz", 1.5, 20.0) == 2  # level 3 halves z: too coarse vertically


def test_level_key_and_scale():
    assert level_key(SHAPES[0], SHAPES[2], "xy", 17) == (17, slice(None), slice(None))
    assert level_key(SHAPES[0], SHAPES[2], "xz", 8003) == (slice(None), 2000, slice(None))
    assert level_key(SHAPES[0], SHAPES[3], "xy", 39) == (19, slice(None), slice(None))
    assert level_key((3, 7, 7), (3, 4, 4), "yz", 6) == (slice(None), slice(None), 3)
    assert slice_scale(SHAPES[0], SHAPES[3], "xz") == (2.0, 8.0)
