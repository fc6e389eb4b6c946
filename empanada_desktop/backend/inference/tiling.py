"""Tile geometry for images larger than one tile.

Tiles overlap by ``overlap`` pixels; each tile owns the part of the image closer to its own
middle than to its neighbours' (the seam is the middle of each overlap), so every owned pixel
was seen by the model with at least ``overlap / 2`` pixels of context around it.

The engine stitches the model's *outputs* (probabilities, center heatmap, offsets) of the owned
parts into maps of the whole image and post-processes those once. Offsets are relative to each
pixel, so they mean the same in every tile: an object cut by a seam gets one center and every
one of its pixels points to it, so it keeps one label without any matching across seams.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    """One tile: the input window and the part of the image it owns (half-open ranges)."""

    y0: int
    x0: int
    height: int
    width: int
    own_y: tuple[int, int]
    own_x: tuple[int, int]


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _owned(starts: list[int], tile: int, length: int, align: int) -> list[tuple[int, int]]:
    bounds = [0]
    for left, right in zip(starts[:-1], starts[1:]):
        middle = (right + left + min(tile, length)) // 2
        bounds.append(max(right, min(left + tile, (middle // align) * align)))
    bounds.append(length)
    return list(zip(bounds[:-1], bounds[1:]))


def plan_tiles(height: int, width: int, tile_size: int, overlap: int, multiple: int) -> list[Tile]:
    """Tiles covering a ``height`` x ``width`` image (both multiples of ``multiple``).

    Tile sides, starts and seams are multiples of ``multiple`` (the padding factor times the
    downsampling), so every tile is a valid model input and its coarse outputs line up with the
    image grid. A side no longer than ``tile_size`` is not split.
    """
    if height % multiple or width % multiple:
        raise ValueError(f"image {height}x{width} is not padded to a multiple of {multiple}")
    tile = max(multiple, -(-tile_size // multiple) * multiple)
    step = max(multiple, ((tile - overlap) // multiple) * multiple)
    ys = _starts(height, tile, step)
    xs = _starts(width, tile, step)
    own_y = _owned(ys, tile, height, multiple)
    own_x = _owned(xs, tile, width, multiple)
    return [
        Tile(y0, x0, min(tile, height), min(tile, width), oy, ox)
        for y0, oy in zip(ys, own_y)
        for x0, ox in zip(xs, own_x)
    ]
