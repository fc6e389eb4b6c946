"""Segment volume block-wise from the inference panel: OME-Zarr labels shown lazily, progress,
cancel and resume, a Dask scheduler address, the output defaults."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from empanada_desktop.ui.models.inference_panel import InferencePanel
from empanada_desktop.ui.shell.worker import detach_loop
from empanada_desktop.ui.viewer.document import Document

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

FAKES = Path(__file__).parents[2] / "backend" / "inference" / "fakes.py"
SHAPE = (16, 64, 96)
BLOCK = "8,32,48"  # 2 x 2 x 2 = 8 blocks
CENTERS = [(8, 32, 48), (8, 14, 48), (4, 32, 20), (12, 48, 76), (4, 16, 80)]  # several on block faces


def _fakes():
    spec = importlib.util.spec_from_file_location("inference_fakes", FAKES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def blob_weights(tmp_path_factory):
    """The test model of the backend tests (it labels bright balls), as a TorchScript file."""
    import torch

    path = tmp_path_factory.mktemp("blob") / "blob.pth"
    torch.jit.script(_fakes().BlobModel()).save(str(path))
    return path


def ball_volume():
    zz, yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    volume = np.zeros(SHAPE, np.float64)
    for cz, cy, cx in CENTERS:
        d = np.sqrt(((zz - cz) * 1.5) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2)
        volume = np.maximum(volume, np.where(d <= 7, 255 - 95 * d / 7, 0))
    return volume.astype(np.uint8)


@pytest.fixture
def panel(qtbot, blob_weights):
    from empanada_desktop.core.registry import ModelRegistry

    ModelRegistry().register("blob", _fakes().model_config(), blob_weights)
    document = Document()
    document.set_image(ball_volume())
    panel = InferencePanel(document)
    qtbot.addWidget(panel)
    panel.select_model("blob")
    panel.device.showPopup()
    panel.device.hidePopup()
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    volume = panel.volume
    volume.median_kernel.setValue(1)
    volume.min_size.setValue(20)
    volume.target.kind.setCurrentIndex(volume.target.kind.findData("zarr"))
    volume.target.block_size.setText(BLOCK)
    volume.target.local_options = {"workers": 2, "threads": 1, "processes": False}
    yield panel
    job = panel.job3d
    if job is not None and job.is_running:
        job.cancel()
        job.wait()
    detach_loop()


def test_segments_block_wise_into_ome_zarr_shown_lazily(panel, qtbot, tmp_path):
    out = tmp_path / "labels.zarr"
    panel.volume.target.output.setText(str(out))
    messages, lazy_shown = [], []
    panel.document.labelsChanged.connect(lambda: lazy_shown.append(panel.document.lazy_labels is not None))
    job = panel.run_3d()
    job.event.connect(lambda event: messages.append(getattr(event, "message", "") or getattr(event, "text", "")))
    with qtbot.waitSignal(panel.labelsWritten, timeout=60000):
        pass
    doc = panel.document
    assert doc.labels is None and doc.lazy_labels is not None  # lazy, not read into memory
    assert doc.labels_path == out
    assert sum(lazy_shown) >= 2  # shown while the blocks were written, and again at the end
    written = zarr.open_array(str(out / "0"), mode="r")[...]
    assert written.shape == SHAPE and len(np.unique(written)) - 1 == len(CENTERS)
    for cz, cy, cx in CENTERS:  # one object per ball, even across block faces
        assert written[cz, cy, cx] > 0
    doc.set_index(8)
    np.testing.assert_array_equal(doc.current_labels(), written[8])
    assert any(m.startswith("segmented") and m.endswith("/8 blocks") for m in messages)
    assert any(m.startswith("writing labels") for m in messages)  # Progress is throttled: some
    assert panel.volume.progress.value() == panel.volume.progress.maximum()
    assert f"{len(CENTERS)} object(s)" in panel.status.text()
    # painting reads the labels into memory first
    view = doc.labels_view()
    assert isinstance(doc.labels, np.ndarray) and view.shape == SHAPE[1:]
    np.testing.assert_array_equal(doc.labels, written)


def test_cancel_keeps_blocks_and_running_again_resumes(panel, qtbot, tmp_path):
    out = tmp_path / "labels.zarr"
    panel.volume.target.output.setText(str(out))
    job = panel.run_3d()
    seen = []

    def on_event(event):
        if getattr(event, "message", "").startswith("segmented") and not seen:
            seen.append(event.message)
            panel.cancel_3d()

    job.event.connect(on_event)
    qtbot.waitUntil(lambda: not job.is_running, timeout=60000)
    qtbot.wait(20)
    assert seen and job.cancel_requested
    assert "Press Segment volume again" in panel.status.text()
    assert (out / "empanada_work").is_dir()
    assert panel.volume.run_button.isEnabled()
    resumed = []
    job = panel.run_3d()
    job.event.connect(lambda event: resumed.append(getattr(event, "text", "")))
    with qtbot.waitSignal(panel.labelsWritten, timeout=60000):
        pass
    assert any(text.startswith("resuming:") for text in resumed)
    labels = zarr.open_array(str(out / "0"), mode="r")[...]
    assert len(np.unique(labels)) - 1 == len(CENTERS)
    assert not (out / "empanada_work").exists()


def test_cluster_needs_an_address_and_zarr(panel, monkeypatch):
    target = panel.volume.target
    shown = []
    monkeypatch.setattr("empanada_desktop.ui.models.volume_segmentation.show_error",
                        lambda parent, title, text: shown.append(text))
    target.kind.setCurrentIndex(target.kind.findData("tiff"))
    target.where.setCurrentIndex(target.where.findData("cluster"))
    assert target.kind.currentData() == "zarr"  # a cluster writes OME-Zarr
    assert not target.kind.model().item(target.kind.findData("tiff")).isEnabled()
    assert panel.run_3d() is None and "scheduler's address" in shown[-1]
    target.address.setText("not an address")
    assert panel.run_3d() is None and "is not an address" in shown[-1]
    target.address.setText("tcp://10.0.0.5:8786")
    assert target.cluster_config().scheduler == "tcp://10.0.0.5:8786"


def test_default_outputs(panel, tmp_path):
    from empanada_desktop.core.paths import subdir
    from empanada_desktop.core.volumes.labels_output import default_labels_output

    target = panel.volume.target
    assert target.default_output() == subdir("inference") / "volume_blob_labels.zarr"  # no file
    image = tmp_path / "cell.ome.zarr"
    assert default_labels_output(image, None, "ome-zarr", "blob", "zarr", tmp_path) == image / "labels" / "blob"
    stack = tmp_path / "stack.h5"
    assert default_labels_output(stack, "/raw", "hdf5", "blob", "zarr", tmp_path / "home") == \
        tmp_path / "stack_raw_blob_labels.zarr"
    assert default_labels_output(stack, None, None, "blob", "tiff", tmp_path / "home") == \
        tmp_path / "home" / "stack_blob_labels.tif"
    target.kind.setCurrentIndex(target.kind.findData("tiff"))
    assert target.output.placeholderText().endswith("volume_blob_labels.tif")
