from pathlib import Path

import numpy as np
import pytest
import tifffile

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine3d import segment_volume
from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.metrics import panoptic_quality

from .fakes import BlobModel, blob_image, model_config

SHAPE = (24, 48, 64)
BALLS = [((12, 16, 18), 11.0), ((11, 30, 44), 10.0)]


def balls(shape=SHAPE, specs=BALLS):
    """A volume of balls brightest in their middle; and the objects BlobModel should find."""
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    volume = np.zeros(shape, np.float64)
    truth = np.zeros(shape, np.int32)
    for k, ((cz, cy, cx), r) in enumerate(specs):
        d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
        volume = np.maximum(volume, np.where(d <= r, 255 - 95 * d / r, 0))
        truth[d <= 0.66 * r] = k + 1
    return volume.astype(np.uint8), truth


def run(volume, out, stop=None, **settings):
    settings.setdefault("min_size", 20)
    settings.setdefault("median_kernel", 1)
    gen = segment_volume(
        BlobModel(), volume, InferenceConfig(**settings), out,
        **({"stop": stop} if stop else {}), model_config=model_config(), device="cpu",
    )
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return done.value, events


@pytest.mark.parametrize("plane", ["xy", "xz", "yz"])
def test_planes_find_the_balls(tmp_path, plane):
    volume, truth = balls()
    path, events = run(volume, tmp_path / "out.tif", plane=plane)
    labels = tifffile.imread(path)
    assert labels.dtype == np.int32 and labels.shape == SHAPE
    assert sorted(np.unique(labels)) == [0, 1, 2]  # one instance class: ids 1..N
    r = panoptic_quality(labels, truth)
    assert r["tp"] == 2 and r["fp"] == 0 and r["sq"] > 0.8
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total == volume.shape[{"xy": 0, "xz": 1, "yz": 2}[plane]] + SHAPE[0]


def test_median_filter_removes_single_slice_noise(tmp_path):
    volume, truth = balls()
    volume[5] = np.maximum(volume[5], blob_image(SHAPE[1:], [(40, 8)], 6))  # in one slice only
    noisy, _ = run(volume, tmp_path / "a.tif", median_kernel=1, min_size=1, min_extent=1)
    assert len(np.unique(tifffile.imread(noisy))) == 4
    filtered, _ = run(volume, tmp_path / "b.tif", median_kernel=3, min_size=1, min_extent=1)
    labels = tifffile.imread(filtered)
    assert len(np.unique(labels)) == 3
    assert panoptic_quality(labels, truth)["tp"] == 2


def test_median_filter_follows_empanada_recursive_rule(tmp_path):
    """As empanada-napari: each filtered slice replaces its own probabilities in the window of the
    next slice, and the first/last slices (no full window) stay unfiltered."""
    volume = np.zeros(SHAPE, np.uint8)
    blob = blob_image(SHAPE[1:], [(24, 32)], 8)
    volume[4] = volume[6] = blob  # present in slices 4 and 6, absent in 5
    volume[0] = blob_image(SHAPE[1:], [(10, 10)], 6)  # only in the first slice
    path, _ = run(volume, tmp_path / "m.tif", median_kernel=3, min_size=1, min_extent=1)
    labels = tifffile.imread(path)
    # A plain median would fill slice 5 from slices 4 and 6; the recursive one has already
    # cleared slice 4 when slice 5 is filtered, so nothing of this blob survives.
    assert not labels[3:8].any()
    assert labels[0, 10, 10] > 0  # the first slice is not filtered


def test_min_size_and_extent_filters(tmp_path):
    volume, _ = balls(specs=BALLS + [((5, 10, 56), 4.0)])
    kept_all, _ = run(volume, tmp_path / "a.tif", min_size=1, min_extent=1)
    assert len(np.unique(tifffile.imread(kept_all))) == 4
    path, events = run(volume, tmp_path / "b.tif", min_size=100)
    assert len(np.unique(tifffile.imread(path))) == 3
    assert any(isinstance(e, Message) and "removed 1" in e.text for e in events)
    flat, _ = run(volume, tmp_path / "c.tif", min_size=1, min_extent=8)
    assert len(np.unique(tifffile.imread(flat))) == 3  # the small ball is ~5 slices thick


def test_ortho_consensus(tmp_path):
    volume, truth = balls()
    path, events = run(volume, tmp_path / "o.tif", ortho=True, vote_thr=2)
    labels = tifffile.imread(path)
    r = panoptic_quality(labels, truth)
    assert r["tp"] == 2 and r["fp"] == 0
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total
    strict, _ = run(volume, tmp_path / "s.tif", ortho=True, vote_thr=3)
    assert (tifffile.imread(strict) > 0).sum() <= (labels > 0).sum()


def test_stop_leaves_nothing_behind(tmp_path):
    volume, _ = balls()
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    result, events = run(volume, tmp_path / "out.tif", stop=stop)
    assert result is None
    assert not (tmp_path / "out.tif").exists()
    assert list(tmp_path.iterdir()) == []
    assert any(isinstance(e, Message) and "stopped" in e.text for e in events)


def test_sixteen_bit_tiff_on_disk_is_scaled_once(tmp_path):
    volume, truth = balls()
    wide = volume.astype(np.uint16) * 200 + 1000
    tifffile.imwrite(tmp_path / "in.tif", wide)
    path, events = run(str(tmp_path / "in.tif"), tmp_path / "out.tif")
    assert any(isinstance(e, Message) and "16-bit" in e.text for e in events)
    # One scaling for the whole volume: the same as scaling it by hand with its percentiles.
    low, high = np.percentile(wide, [0.5, 99.5])
    by_hand = np.clip(np.rint((wide - low) * (255.0 / (high - low))), 0, 255).astype(np.uint8)
    reference, _ = run(by_hand, tmp_path / "ref.tif")
    assert np.array_equal(tifffile.imread(path), tifffile.imread(reference))
    assert len(np.unique(tifffile.imread(path))) > 1


def test_bad_volumes(tmp_path):
    with pytest.raises(ImageReadError, match="empty"):
        run(np.zeros((0, 8, 8), np.uint8), tmp_path / "o.tif")
    with pytest.raises(ImageReadError, match="RGB"):
        run(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "o.tif")
    assert not Path(tmp_path / "o.tif").exists()
