import numpy as np
import pytest
import torch

from empanada_desktop.backend.inference import postprocess as pp
from empanada_desktop.backend.inference.postprocess import (
    PostprocessParams,
    find_centers,
    group_pixels,
    harden,
    postprocess,
)


def offsets_towards(assign, centers):
    """(2, H, W) offsets that send every pixel of ``assign`` (index into centers, -1 none) home."""
    h, w = assign.shape
    yy, xx = np.mgrid[:h, :w]
    off = np.zeros((2, h, w), np.float32)
    for k, (cy, cx) in enumerate(centers):
        m = assign == k
        off[0][m] = cy - yy[m]
        off[1][m] = cx - xx[m]
    return torch.from_numpy(off)


def heatmap(shape, centers, values=None):
    hmp = torch.zeros(shape)
    for k, (cy, cx) in enumerate(centers):
        hmp[cy, cx] = 1.0 if values is None else values[k]
    return hmp


def test_harden_binary_and_multiclass():
    probs = torch.tensor([[[0.2, 0.5, 0.9]]])
    assert harden(probs, 0.5).tolist() == [[0, 1, 1]]
    multi = torch.tensor([[[0.7, 0.1]], [[0.2, 0.3]], [[0.1, 0.6]]])
    assert harden(multi, 0.5).tolist() == [[0, 2]]


def test_find_centers_threshold_and_nms():
    hmp = torch.zeros(12, 12)
    hmp[2, 2] = 0.9
    hmp[2, 3] = 0.5  # inside 0.9's window: suppressed
    hmp[9, 9] = 0.3
    hmp[6, 0] = 0.05  # below the threshold
    centers, scores = find_centers(hmp, 0.1, 3)
    assert centers.tolist() == [[2, 2], [9, 9]]
    assert scores.tolist() == pytest.approx([0.9, 0.3])
    centers, _ = find_centers(hmp, 0.1, 3, max_centers=1)
    assert centers.tolist() == [[2, 2]]
    # Even kernels keep the map's size.
    centers, _ = find_centers(hmp, 0.1, 4)
    assert centers.tolist() == [[2, 2], [9, 9]]


def test_no_objects_gives_void_things():
    probs = torch.ones(1, 8, 8)
    params = PostprocessParams()
    classes, instances = postprocess(probs, torch.zeros(2, 2), torch.zeros(2, 2, 2), cell=4, unit=4, params=params)
    assert instances.sum() == 0
    assert classes.sum() == 0  # thing pixels without any center are void


def test_offsets_decide_touching_objects():
    # Two touching objects split along a diagonal line; pixels follow their offsets, not distance.
    h, w = 16, 16
    centers = [(4, 4), (11, 11)]
    yy, xx = np.mgrid[:h, :w]
    assign = np.where(xx < 12, 0, 1)  # not the geometric bisector on purpose
    off = offsets_towards(assign, centers)
    probs = torch.ones(1, h, w)
    classes, instances = postprocess(
        probs, heatmap((h, w), centers), off, cell=1, unit=1, params=PostprocessParams()
    )
    assert (classes == 1).all()
    expected = torch.from_numpy(assign + 1)
    assert torch.equal(instances, expected)


def test_more_than_255_objects_and_chunked_grouping(monkeypatch):
    # 20 x 20 touching squares of 5 x 5 pixels: 400 objects.
    n, size = 20, 5
    h = w = n * size
    yy, xx = np.mgrid[:h, :w]
    assign = (yy // size) * n + (xx // size)
    centers = [(r * size + 2, c * size + 2) for r in range(n) for c in range(n)]
    off = offsets_towards(assign, centers)
    monkeypatch.setattr(pp, "GROUPING_BLOCK_ELEMENTS", 4096)  # forces many chunks
    classes, instances = postprocess(
        torch.ones(1, h, w), heatmap((h, w), centers), off, cell=1, unit=1, params=PostprocessParams()
    )
    inst = instances.numpy()
    assert len(np.unique(inst)) == 400
    # One to one with the true assignment.
    pairs = np.unique(np.stack([assign.ravel(), inst.ravel()]), axis=1)
    assert pairs.shape[1] == 400


def test_coarse_grid_cells_cover_blocks():
    # 1/4-resolution grid: one center per 8x8 object, cells of 4x4 output pixels.
    probs = torch.zeros(1, 16, 16)
    probs[0, :8, :8] = 1
    probs[0, 8:, 8:] = 1
    hmp = heatmap((4, 4), [(0, 0), (3, 3)])
    grid_assign = np.full((4, 4), -1)
    grid_assign[:2, :2] = 0
    grid_assign[2:, 2:] = 1
    # Offsets in model-input pixels: grid step is 4 pixels.
    off = offsets_towards(grid_assign, [(0, 0), (3, 3)]) * 4
    classes, instances = postprocess(probs, hmp, off, cell=4, unit=4, params=PostprocessParams())
    assert torch.equal(instances[:8, :8], torch.ones(8, 8, dtype=torch.long))
    assert torch.equal(instances[8:, 8:], torch.full((8, 8), 2))
    assert instances[:8, 8:].sum() == 0


def test_max_objects_keeps_the_most_confident():
    h, w = 8, 24
    centers = [(4, 4), (4, 12), (4, 20)]
    assign = np.repeat(np.arange(w)[None] // 8, h, axis=0)
    off = offsets_towards(assign, centers)
    params = PostprocessParams(max_objects=2)
    _, instances = postprocess(
        torch.ones(1, h, w), heatmap((h, w), centers, [0.5, 0.9, 0.7]), off, cell=1, unit=1, params=params
    )
    # The least confident center (0.5, left) is dropped before grouping; its pixels join the
    # nearest kept center.
    assert set(np.unique(instances.numpy())) == {1, 2}
    assert instances[4, 12] != instances[4, 20]
    assert instances[4, 4] == instances[4, 12]


def test_multiclass_vote_and_stuff_area():
    # Classes: 1 = thing, 2 = stuff. An instance mostly of class 1 with a few class-3 thing pixels.
    h, w = 10, 10
    sem = torch.zeros(h, w, dtype=torch.long)
    sem[:5, :5] = 1
    sem[0, 0] = 3
    sem[6:, 6:] = 2  # 16 px of stuff
    probs = torch.nn.functional.one_hot(sem, 4).permute(2, 0, 1).float()
    assign = np.full((h, w), -1)
    assign[:5, :5] = 0
    off = offsets_towards(assign, [(2, 2)])
    params = PostprocessParams(thing_list=(1, 3), stuff_area=10)
    classes, instances = postprocess(probs, heatmap((h, w), [(2, 2)]), off, cell=1, unit=1, params=params)
    assert classes[0, 0] == 1  # the instance's majority class
    assert (instances[:5, :5] == 1).all()
    assert (classes[6:, 6:] == 2).all()
    params = PostprocessParams(thing_list=(1, 3), stuff_area=20)
    classes, _ = postprocess(probs, heatmap((h, w), [(2, 2)]), off, cell=1, unit=1, params=params)
    assert (classes[6:, 6:] == 0).all()  # too small a stuff region


def test_semantic_only_ignores_centers():
    probs = torch.ones(1, 8, 8)
    classes, instances = postprocess(probs, None, None, cell=1, unit=1, params=PostprocessParams(thing_list=()))
    assert (classes == 1).all() and instances.sum() == 0


def test_group_pixels_without_centers_is_zero():
    ids = group_pixels(torch.zeros(0, 2, dtype=torch.long), torch.zeros(2, 4, 4), torch.ones(4, 4, dtype=torch.bool))
    assert ids.sum() == 0


@pytest.mark.gpu
def test_cuda_matches_cpu():
    n, size = 6, 8
    h = w = n * size
    yy, xx = np.mgrid[:h, :w]
    assign = (yy // size) * n + (xx // size)
    centers = [(r * size + 3, c * size + 3) for r in range(n) for c in range(n)]
    off = offsets_towards(assign, centers)
    hmp = heatmap((h, w), centers)
    args = dict(cell=1, unit=1, params=PostprocessParams())
    cpu = postprocess(torch.ones(1, h, w), hmp, off, **args)
    gpu = postprocess(torch.ones(1, h, w).cuda(), hmp.cuda(), off.cuda(), **args)
    assert torch.equal(cpu[1], gpu[1].cpu()) and torch.equal(cpu[0], gpu[0].cpu())
