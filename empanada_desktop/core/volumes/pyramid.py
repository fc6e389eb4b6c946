"""Which multiscale pyramid level to show a slice from, and where that slice is in the level.

A level's downsampling factor along an axis is the full-resolution size over the level's size
(20000 / 10000 = 2). A view that shows ``r`` image pixels per screen pixel gains nothing from a
level finer than ``r``, so the viewer reads the coarsest level whose factors are at most ``r``:
a zoomed-out 20k x 20k slice reads about 1/16 of the data from a 4x level.
"""

from __future__ import annotations

from collections.abc import Sequence

# Rows, columns and the fixed axis of a slice in each plane, as (z, y, x) axis numbers.
PLANE_AXES = {"xy": (1, 2, 0), "xz": (0, 2, 1), "yz": (0, 1, 2)}
# Below this many image pixels per screen pixel the full resolution is shown.
MIN_PIXELS_PER_SCREEN_PIXEL = 2.0


def downsampling(base_shape: Sequence[int], level_shape: Sequence[int]) -> tuple[float, ...]:
    """Per-axis factor of a level: full-resolution size / level size."""
    return tuple(b / n for b, n in zip(base_shape, level_shape, strict=True))


def choose_level(shapes: Sequence[Sequence[int]], plane: str, rows_per_pixel: float,
                 cols_per_pixel: float) -> int:
    """The level (index into ``shapes``, full resolution first, all (Z, Y, X)) to show a slice of
    ``plane`` from, when one screen pixel covers ``rows_per_pixel`` x ``cols_per_pixel``
    full-resolution pixels.

    0 below 2 image pixels per screen pixel; else the coarsest level whose factors along the
    slice's rows and columns are at most the pixels per screen pixel (an axis a level does not
    shrink, such as z in most EM pyramids, never rules it out).
    """
    if max(rows_per_pixel, cols_per_pixel) < MIN_PIXELS_PER_SCREEN_PIXEL or len(shapes) < 2:
        return 0
    row_axis, col_axis, _ = PLANE_AXES[plane]
    best, best_area = 0, 1.0
    for number, shape in enumerate(shapes[1:], start=1):
        if len(shape) != len(shapes[0]) or 0 in shape:
            continue
        factors = downsampling(shapes[0], shape)
        row_factor, col_factor = factors[row_axis], factors[col_axis]
        fits = row_factor <= max(rows_per_pixel, 1.0) and col_factor <= max(cols_per_pixel, 1.0)
        if fits and row_factor * col_factor > best_area:
            best, best_area = number, row_factor * col_factor
    return best


def level_key(base_shape: Sequence[int], level_shape: Sequence[int], plane: str, index: int) -> tuple:
    """The numpy key of slice ``index`` of ``plane`` (full-resolution numbering) in a level:
    the fixed axis' index divided by that axis' factor (``index // factor``)."""
    _, _, fixed = PLANE_AXES[plane]
    level_index = min(int(index) * int(level_shape[fixed]) // int(base_shape[fixed]), int(level_shape[fixed]) - 1)
    key: list = [slice(None)] * 3
    key[fixed] = max(level_index, 0)
    return tuple(key)


def slice_scale(base_shape: Sequence[int], level_shape: Sequence[int], plane: str) -> tuple[float, float]:
    """(row, column) scale that stretches a level's slice back over the full-resolution slice."""
    row_axis, col_axis, _ = PLANE_AXES[plane]
    factors = downsampling(base_shape, level_shape)
    return factors[row_axis], factors[col_axis]
