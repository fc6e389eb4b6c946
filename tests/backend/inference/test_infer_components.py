from collections import deque

import numpy as np
import pytest

from empanada_desktop.backend.inference.components import (
    connected_components,
    overlap_table,
    panoptic_ids,
    relabel_sequential,
)


def bfs_components(labels, connectivity):
    h, w = labels.shape
    out = np.zeros((h, w), int)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 2:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    n = 0
    for y in range(h):
        for x in range(w):
            if labels[y, x] and not out[y, x]:
                n += 1
                out[y, x] = n
                queue = deque([(y, x)])
                while queue:
                    cy, cx = queue.popleft()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and not out[ny, nx] and labels[ny, nx] == labels[y, x]:
                            out[ny, nx] = n
                            queue.append((ny, nx))
    return out, n


@pytest.mark.parametrize("connectivity", [1, 2])
@pytest.mark.parametrize("seed", range(4))
def test_matches_breadth_first_search(seed, connectivity):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=(23, 31)) * (rng.random((23, 31)) > 0.3)
    ours, source = connected_components(labels, connectivity)
    ref, n = bfs_components(labels, connectivity)
    assert ours.max() == n
    assert np.array_equal(ours, ref)  # same raster numbering
    assert np.array_equal(source[ours], labels)


def spiral(size):
    """A one-pixel-wide square spiral with one-pixel gaps: one long thin object."""
    img = np.zeros((size, size), int)
    y, x = 0, 0
    directions = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    d = 0
    img[y, x] = 1
    stuck = 0
    while stuck < 4:
        dy, dx = directions[d]
        ny, nx = y + dy, x + dx
        ahead_y, ahead_x = ny + dy, nx + dx
        free = 0 <= ny < size and 0 <= nx < size and not img[ny, nx]
        blocked_ahead = 0 <= ahead_y < size and 0 <= ahead_x < size and img[ahead_y, ahead_x]
        if free and not blocked_ahead:
            y, x = ny, nx
            img[y, x] = 1
            stuck = 0
        else:
            d = (d + 1) % 4
            stuck += 1
    return img


def test_spiral_needs_many_rounds():
    img = spiral(41)
    assert img.sum() > 400
    comps, _ = connected_components(img, 1)
    assert comps.max() == 1
    ref, n = bfs_components(img, 1)
    assert n == 1
    snake = np.zeros((9, 9), int)
    snake[::2] = 1
    snake[1::4, -1] = 1
    snake[3::4, 0] = 1
    comps, _ = connected_components(snake, 1)
    assert comps.max() == 1


def test_relabel_and_overlap():
    lab = np.array([[0, 7, 7], [300, 0, 7]])
    new, old = relabel_sequential(lab)
    assert new.tolist() == [[0, 1, 1], [2, 0, 1]] and old.tolist() == [0, 7, 300]
    a = np.array([[1, 1, 0], [2, 2, 2]])
    b = np.array([[5, 6, 6], [6, 0, 6]])
    ia, ib, n = overlap_table(a, b)
    assert list(zip(ia.tolist(), ib.tolist(), n.tolist())) == [(1, 5, 1), (1, 6, 1), (2, 6, 2)]


def test_panoptic_ids_split_pieces_and_stuff():
    classes = np.array([[1, 1, 0, 1, 2, 2]])
    instances = np.array([[4, 4, 0, 4, 0, 0]])  # one instance in two pieces
    out = panoptic_ids(classes, instances, 1000)
    assert out.tolist() == [[1001, 1001, 0, 1002, 2000, 2000]]
    assert out.dtype == np.int32


def test_panoptic_ids_cap_keeps_largest():
    classes = np.ones((1, 9), int)
    instances = np.array([[1, 0, 2, 2, 0, 3, 3, 3, 0]])
    out = panoptic_ids(classes * (instances > 0), instances, 3)  # at most 2 per class
    assert out.tolist() == [[0, 0, 4, 4, 0, 5, 5, 5, 0]]


@pytest.mark.parametrize("high", [5, 70_000])  # counted by bincount / by sorting the keys
def test_overlap_table_matches_counting_pixel_pairs(high):
    """Every pair of non-zero labels sharing pixels, in (a, b) order, with its pixel count, for
    small ids (bincount path), large ids (sorted keys) and negative ones (stuff elsewhere)."""
    from collections import Counter

    rng = np.random.default_rng(0)
    for low in (0, -3):
        a = rng.integers(low, high, (40, 50))
        b = rng.integers(low, high, (40, 50))
        a[:5] = 0
        expected = Counter((int(x), int(y)) for x, y in zip(a.ravel(), b.ravel()) if x != 0 and y != 0)
        ia, ib, n = overlap_table(a, b)
        got = list(zip(ia.tolist(), ib.tolist(), n.tolist()))
        assert got == sorted((x, y, c) for (x, y), c in expected.items())
