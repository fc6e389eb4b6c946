"""Block-wise inference on a small Dask cluster agrees with the single-process engine, joins
objects across block faces and resumes after a stop with identical labels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from empanada_desktop.backend.events import Message, Progress
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine3d import segment_volume

from .fakes import blob_model_and_config, model_config

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from empanada_desktop.backend.inference import blockwise  # noqa: E402
from empanada_desktop.backend.inference.blockwise import (  # noqa: E402
    BlockwiseSettings,
    ModelRef,
    chunk_shape,
    segment_blockwise,
)

SHAPE = (32, 96, 128)
BLOCK = (16, 48, 64)  # 2 x 2 x 2 = 8 blocks
MODEL = ModelRef(factory=blob_model_and_config, key="blob")


def ball_volume(shape=SHAPE, n=14, seed=3):
    """Balls brightest in their middle, several of them across the block faces."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    volume = np.zeros(shape, np.float64)
    centers = [(16, 48, 64), (16, 20, 64), (8, 48, 30), (24, 70, 100)]  # on faces and corners
    while len(centers) < n:
        c = tuple(int(rng.integers(6, s - 6)) for s in shape)
        if all(np.hypot(np.hypot(c[0] - d[0], c[1] - d[1]), c[2] - d[2]) > 16 for d in centers):
            centers.append(c)
    for cz, cy, cx in centers:
        r = 7.0
        d = np.sqrt((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
        volume = np.maximum(volume, np.where(d <= r, 255 - 95 * d / r, 0))
    return volume.astype(np.uint8)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None, silence_logs=50)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def settings(**kw):
    kw.setdefault("min_size", 20)
    kw.setdefault("median_kernel", 1)
    kw.setdefault("device", "cpu")
    return InferenceConfig(**kw)


def run(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as done:
            return done.value, events


def blockwise_labels(volume, out, client, config, stop=None, block=BLOCK, halo=(2, 16, 16)):
    gen = segment_blockwise(MODEL, volume, config, out, **({"stop": stop} if stop else {}),
                            blocks=BlockwiseSettings(block_size=block, halo=halo), client=client)
    return run(gen)


def single_labels(volume, out, config):
    path, _ = run(segment_volume(blob_model_and_config()[0], volume, config, out,
                                 model_config=model_config(), device="cpu"))
    return tifffile.imread(path)


def match(reference: np.ndarray, result: np.ndarray):
    """IoU of each reference object with its best-overlapping result object."""
    ious = []
    for obj in np.unique(reference[reference > 0]):
        mask = reference == obj
        ids, counts = np.unique(result[mask], return_counts=True)
        counts = counts[ids > 0]
        ids = ids[ids > 0]
        if not len(ids):
            ious.append(0.0)
            continue
        best = ids[np.argmax(counts)]
        other = result == best
        ious.append((mask & other).sum() / (mask | other).sum())
    return np.array(ious)


def test_agrees_with_the_single_process_engine(tmp_path, client):
    volume = ball_volume()
    config = settings()
    reference = single_labels(volume, tmp_path / "single.tif", config)
    blockwise.MODEL_LOADS[0] = 0
    path, events = blockwise_labels(volume, tmp_path / "labels.zarr", client, config)
    labels = zarr.open_array(str(path / "0"), mode="r")[...]
    assert labels.dtype == np.int32 and labels.shape == SHAPE
    n_ref = len(np.unique(reference)) - 1
    n_blk = len(np.unique(labels)) - 1
    assert n_ref == 14
    assert abs(n_blk - n_ref) <= 0.02 * n_ref
    ious = match(reference, labels)
    assert (ious >= 0.9).mean() >= 0.98, ious
    # no object is split at a block face: each reference object is one blockwise id
    for obj in np.unique(reference[reference > 0]):
        ids = np.unique(labels[(reference == obj) & (labels > 0)])
        assert len(ids) == 1
    assert blockwise.MODEL_LOADS[0] <= 2  # once per worker (thread), not once per block
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total == 16
    assert "8 blocks" in progress[7].message or "8/8" in progress[7].message
    # valid OME-Zarr 0.4 label image, no work files left
    attrs = zarr.open_group(str(path), mode="r").attrs
    assert attrs["multiscales"][0]["version"] == "0.4"
    assert "image-label" in attrs and attrs["empanada_desktop"]["complete"]
    assert not (path / "empanada_work").exists()
    # same job again: nothing to do
    again, events = blockwise_labels(volume, path, client, config)
    assert again == path and any("already complete" in e.text for e in events if isinstance(e, Message))


def test_stop_then_resume_gives_identical_labels(tmp_path, client):
    volume = ball_volume(seed=5)
    config = settings()
    full, _ = blockwise_labels(volume, tmp_path / "full.zarr", client, config)
    expected = zarr.open_array(str(full / "0"), mode="r")[...]
    seen = []

    def stop():
        seen.append(1)
        return (tmp_path / "part.zarr" / "empanada_work" / "blocks").exists() and len(
            list((tmp_path / "part.zarr" / "empanada_work" / "blocks").glob("*.npz"))) >= 3

    result, events = blockwise_labels(volume, tmp_path / "part.zarr", client, config, stop=stop)
    assert result is None
    assert any("resume" in e.text for e in events if isinstance(e, Message))
    state = zarr.open_array(str(tmp_path / "part.zarr" / "empanada_work" / "state"), mode="r")[...]
    assert 0 < (state > 0).sum() < 8
    result, events = blockwise_labels(volume, tmp_path / "part.zarr", client, config)
    assert any("resuming" in e.text for e in events if isinstance(e, Message))
    np.testing.assert_array_equal(zarr.open_array(str(result / "0"), mode="r")[...], expected)


def test_other_settings_do_not_resume_a_foreign_output(tmp_path, client):
    from empanada_desktop.core.errors import UserError

    volume = ball_volume()
    blockwise_labels(volume, tmp_path / "o.zarr", client, settings())
    with pytest.raises(UserError, match="different job"):
        blockwise_labels(volume, tmp_path / "o.zarr", client, settings(min_size=5))


def test_ortho_and_16_bit_input(tmp_path, client):
    volume = ball_volume().astype(np.uint16) * 200 + 1000  # scaled once for the whole volume
    config = settings(ortho=True)
    reference = single_labels(volume, tmp_path / "s.tif", config)
    path, _ = blockwise_labels(volume, tmp_path / "o.zarr", client, config, halo=(8, 8, 8))
    labels = zarr.open_array(str(path / "0"), mode="r")[...]
    assert len(np.unique(labels)) == len(np.unique(reference))
    assert (match(reference, labels) >= 0.9).mean() >= 0.98


def test_chunks_never_straddle_blocks():
    assert chunk_shape((64, 1792, 1792)) == (32, 256, 256)
    assert chunk_shape((16, 48, 64)) == (16, 48, 64)
    for block in [(64, 1792, 1792), (30, 1000, 1000), (7, 97, 500)]:
        assert all(b % c == 0 for b, c in zip(block, chunk_shape(block), strict=True))
