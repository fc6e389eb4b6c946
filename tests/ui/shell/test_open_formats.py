"""The window opens every volume format lazily, with its voxel size; datasets are chosen; the
voxel size can be corrected; patches are picked from lazy volumes; bad files get a message."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from empanada_desktop.core.volumes import ImageSource, Spacing
from empanada_desktop.ui.shell import main_window as main_window_module
from empanada_desktop.ui.shell.main_window import MainWindow

VOLUME = (np.arange(8 * 40 * 48) % 251).astype(np.uint8).reshape(8, 40, 48)
CORE_TESTS = Path(__file__).parents[2] / "core" / "test_volumes.py"


def _core_helpers():
    """The N5 and DM writers of the core reader tests."""
    spec = importlib.util.spec_from_file_location("volume_test_helpers", CORE_TESTS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def messages(monkeypatch):
    shown = []
    monkeypatch.setattr(main_window_module, "show_error", lambda parent, title, text: shown.append((title, text)))
    return shown


@pytest.fixture
def window(qtbot):
    win = MainWindow()
    qtbot.addWidget(win)
    return win


def ome_zarr(path: Path, zarr_format: int) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.create_array("0", data=VOLUME, chunks=(2, 20, 24))
    group.create_array("1", data=VOLUME[:, ::2, ::2], chunks=(2, 20, 24))
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [50, 8 * f, 8 * f]}]}
                for i, f in ((0, 1), (1, 2))]
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}


def write(kind: str, folder: Path) -> tuple[Path, str]:
    """A small file of ``kind`` holding VOLUME, and the voxel size text the window should show."""
    if kind in ("ome-zarr-0.4", "ome-zarr-0.5"):
        path = folder / "cell.ome.zarr"
        ome_zarr(path, 2 if kind.endswith("0.4") else 3)
        return path, "Voxel z 50 × y 8 × x 8 nm"
    if kind == "n5":
        path = folder / "cell.n5"
        _core_helpers().write_n5(path, "raw", VOLUME, (2, 20, 24),
                                 attrs={"resolution": [4, 4, 30], "units": ["nm", "nm", "nm"]})
        return Path(f"{path}:/raw"), "Voxel z 30 × y 4 × x 4 nm"
    if kind == "hdf5":
        import h5py

        path = folder / "cell.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("raw", data=VOLUME, chunks=(1, 20, 24)).attrs["element_size_um"] = [0.05, 0.01, 0.01]
        return path, "Voxel z 0.05 × y 0.01 × x 0.01 µm"
    if kind == "mrc":
        import mrcfile

        path = folder / "cell.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(VOLUME)
            mrc.voxel_size = (12.0, 12.0, 30.0)  # x, y, z
        return path, "Voxel z 30 × y 12 × x 12 Å"
    if kind in ("dm3", "dm4"):
        path = folder / f"cell.{kind}"
        path.write_bytes(_core_helpers()._DMWriter(int(kind[-1])).file(VOLUME, (20.0, 5.0, 5.0), "nm"))
        return path, "Voxel z 20 × y 5 × x 5 nm"
    if kind == "tiff-compressed":
        path = folder / "cell.tif"
        tifffile.imwrite(path, VOLUME, imagej=True, compression="zlib", resolution=(1 / 0.006, 1 / 0.006),
                         metadata={"spacing": 0.03, "unit": "um", "axes": "ZYX"})
        return path, "Voxel z 0.03 × y 0.006 × x 0.006 µm"
    if kind == "tiff-folder":
        path = folder / "slices"
        path.mkdir()
        for z, plane in enumerate(VOLUME):
            tifffile.imwrite(path / f"s{z}.tif", plane)
        return path, "Voxel size unknown"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["ome-zarr-0.4", "ome-zarr-0.5", "n5", "hdf5", "mrc", "dm3", "dm4",
                                  "tiff-compressed", "tiff-folder"])
def test_each_format_opens_with_its_slice_and_voxel_size(window, tmp_path, messages, kind):
    path, voxel_text = write(kind, tmp_path)
    assert window.open_path(path, folder_as="volume"), messages
    doc = window.document
    assert doc.shape3d == VOLUME.shape and doc.index == 4
    np.testing.assert_array_equal(window.viewer.current_slice(), VOLUME[4])
    np.testing.assert_array_equal(window.viewer.image_item.image, VOLUME[4])
    assert window.voxel_size.text() == voxel_text and not window.voxel_size.isHidden()
    chunked = kind not in ("mrc", "dm3", "dm4")  # those are memory-mapped numpy arrays
    assert isinstance(doc.image, ImageSource) == chunked
    doc.set_plane("xz")
    np.testing.assert_array_equal(window.viewer.current_slice(), VOLUME[:, doc.index, :])
    assert not messages


def test_lazy_source_reads_only_the_slice_on_screen(window, tmp_path, monkeypatch):
    path, _ = write("ome-zarr-0.4", tmp_path)
    window.open_path(path)
    source = window.document.image
    reads = []
    original = source._array.__getitem__
    monkeypatch.setattr(source, "_array", type("Spy", (), {
        "shape": source._array.shape, "dtype": source._array.dtype,
        "__getitem__": lambda self, key: reads.append(key) or original(key)})())
    window.document.set_index(6)
    assert reads == [(6, slice(None), slice(None))]


def test_several_datasets_ask_which_one(window, tmp_path, messages):
    import h5py

    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("volumes/raw", data=VOLUME)
        f.create_dataset("volumes/labels", data=VOLUME.astype(np.uint32))
    asked = []

    def choose(file, datasets):
        asked.append(sorted((d.name, d.shape, d.dtype) for d in datasets))
        return None  # cancelled: nothing opens, no error

    assert not window.open_path(path, choose_dataset=choose)
    assert asked == [[("/volumes/labels", (8, 40, 48), "uint32"), ("/volumes/raw", (8, 40, 48), "uint8")]]
    assert window.document.image is None and not messages
    assert window.open_path(path, choose_dataset=lambda file, datasets: "/volumes/raw")
    assert window.document.dataset == "/volumes/raw"
    np.testing.assert_array_equal(window.viewer.current_slice(), VOLUME[4])
    assert f"{path.resolve()}:/volumes/raw" in window.recent_files()
    assert window.open_path(f"{path}:/volumes/labels")  # as on the command line: no question
    assert window.document.image.dtype == np.uint32


def test_an_ome_zarr_image_with_labels_opens_without_asking(window, tmp_path, messages):
    from empanada_desktop.core.volumes.zarr_io import write_labels

    path = tmp_path / "cell.ome.zarr"
    ome_zarr(path, 2)
    write_labels(path / "labels" / "mito", VOLUME.astype(np.int32), voxel_size=(50, 8, 8), unit="nanometer")

    def choose(file, datasets):
        raise AssertionError("an OME-Zarr image is opened, not asked about")

    assert window.open_path(path, choose_dataset=choose)
    assert window.document.image.dtype == np.uint8 and not messages
    np.testing.assert_array_equal(window.viewer.current_slice(), VOLUME[4])
    assert window.statusBar().currentMessage() == "Opened cell.ome.zarr (8 × 40 × 48)."  # not the start hint


def test_labels_open_lazily_from_ome_zarr_and_hdf5(window, tmp_path, messages):
    import h5py

    from empanada_desktop.core.volumes.zarr_io import write_labels

    path = tmp_path / "cell.ome.zarr"
    ome_zarr(path, 2)
    labels = (VOLUME // 50).astype(np.int32)
    write_labels(path / "labels" / "mito", labels, voxel_size=(50, 8, 8), unit="nanometer")
    assert window.open_path(path)
    assert window.open_labels(path / "labels" / "mito") and not messages
    assert window.document.labels is None  # lazy: nothing read into memory yet
    np.testing.assert_array_equal(window.document.current_labels(), labels[4])
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f.create_dataset("seg", data=labels.astype(np.uint16))
        f.create_dataset("prob", data=VOLUME.astype(np.float32))
    assert window.open_labels(f"{tmp_path / 'seg.h5'}:/seg")
    np.testing.assert_array_equal(window.document.current_labels(), labels[4])
    window.document.set_labels(None)
    assert not window.open_labels(tmp_path / "seg.h5", choose_dataset=lambda file, infos: None)  # cancelled
    assert window.document.labels_array() is None and messages == []
    asked = []
    assert window.open_labels(tmp_path / "seg.h5", choose_dataset=lambda file, infos: asked.append(
        sorted(i.name for i in infos)) or "/seg")
    assert asked == [["/prob", "/seg"]]
    np.testing.assert_array_equal(window.document.current_labels(), labels[4])
    assert not window.open_labels(f"{tmp_path / 'seg.h5'}:/prob")  # not whole numbers
    assert "whole numbers" in messages[-1][1] and "seg.h5:/prob" in messages[-1][1]
    assert not window.open_labels(path / "nothing")
    assert "nothing" in messages[-1][1]


def test_dataset_dialog_lists_shape_and_type(qtbot, tmp_path):
    from empanada_desktop.core.volumes import DatasetInfo
    from empanada_desktop.ui.shell.open_dialog import DatasetDialog

    dialog = DatasetDialog(tmp_path / "x.h5", [DatasetInfo("/mask", (8, 40, 48), "uint8"),
                                              DatasetInfo("/raw", (8, 400, 480), "uint16", True)])
    qtbot.addWidget(dialog)
    row = dialog.list.topLevelItem(1)
    assert [row.text(i) for i in range(4)] == ["/raw", "8 × 400 × 480", "uint16", "multiscale"]
    assert dialog.chosen() == "/raw"  # the largest image that is not labels is preselected


def test_folder_of_tiffs_asks_volume_or_2d_images(window, tmp_path):
    path, _ = write("tiff-folder", tmp_path)
    assert window.open_path(path, choose_folder_kind=lambda folder, n: "stack")
    assert window.document.is_stack and window.document.stack_names[0] == "s0.tif"
    assert window.open_path(path, choose_folder_kind=lambda folder, n: "volume")
    assert not window.document.is_stack and window.document.shape3d == VOLUME.shape
    assert not window.open_path(path, choose_folder_kind=lambda folder, n: None)


def test_drop_a_zarr_folder(window, tmp_path):
    path, _ = write("ome-zarr-0.5", tmp_path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert isinstance(window.document.image, ImageSource) and window.document.path == path


def test_voxel_size_is_corrected_and_remembered(window, tmp_path):
    path, _ = write("hdf5", tmp_path)
    window.open_path(path)
    assert window.viewer.z_scale_spin.value() == pytest.approx(5.0)
    window.voxel_size.edit(Spacing((40.0, 8.0, 8.0), "nm", known=True, origin="user"))
    assert window.document.spacing.voxel_size == (40.0, 8.0, 8.0)
    assert window.voxel_size.text() == "Voxel z 40 × y 8 × x 8 nm (corrected)"
    assert window.viewer.z_scale_spin.value() == pytest.approx(5.0)
    other = MainWindow()
    other.open_path(path)
    assert other.document.spacing.voxel_size == (40.0, 8.0, 8.0) and other.document.spacing.unit == "nanometer"
    other.close()


def test_patches_are_cut_from_a_lazy_volume(window, tmp_path):
    path, _ = write("n5", tmp_path)
    window.open_path(path)
    picker = window.patch_picker
    picker.size_spin.setValue(16)
    picker.count_spin.setValue(3)
    patches = picker.pick()
    assert len(patches) == 3
    for patch in patches:
        o = patch.origin
        assert o["plane"] == "xy"
        np.testing.assert_array_equal(patch.image, VOLUME[o["index"], o["row"]:o["row"] + 16, o["col"]:o["col"] + 16])
        patch.mask[2:6, 2:6] = 1  # annotated
    window.training_set.save(tmp_path / "set")
    assert len(list((tmp_path / "set" / "cell").glob("images/*.tiff"))) == 3


@pytest.mark.parametrize("kind", ["tiff_named_h5", "damaged_zarr", "damaged_mrc"])
def test_bad_volumes_show_one_message(window, tmp_path, messages, kind):
    if kind == "tiff_named_h5":
        path = tmp_path / "stack.h5"
        tifffile.imwrite(path, VOLUME)
        expected = "rename it to stack.tif"
    elif kind == "damaged_zarr":
        path, _ = write("ome-zarr-0.4", tmp_path)
        for chunk in (path / "0").rglob("*"):
            if chunk.is_file() and not chunk.name.startswith("."):
                chunk.write_bytes(b"garbage")
        expected = str(path)
    else:
        path = tmp_path / "cut.mrc"
        path.write_bytes(b"\x00" * 300)
        expected = "cut.mrc"
    assert not window.open_path(path)
    assert len(messages) == 1 and expected in messages[0][1], messages
    assert window.document.image is None
