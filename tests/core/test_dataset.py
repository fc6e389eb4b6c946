"""The empanada dataset layout: scanning, problems naming files, weights, read/write pairs."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from empanada_desktop.core.dataset import (
    Pair,
    next_pair_name,
    read_pair,
    scan_dataset,
    source_weights,
    validate_roots,
    write_pair,
)
from empanada_desktop.core.errors import DatasetError


def _patch(seed=0, size=32):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size), dtype=np.uint8)
    mask = np.zeros((size, size), np.int32)
    mask[4:12, 4:12] = 1
    mask[20:28, 16:30] = 2
    return image, mask


def _make_set(root, sources=(("cellA", 3), ("cellB", 1))):
    for source, count in sources:
        for i in range(count):
            write_pair(root, source, f"p{i}", *_patch(i))
    return root


def test_write_and_scan_round_trip(tmp_path):
    root = _make_set(tmp_path / "train")
    report = scan_dataset(root)
    assert report.problems == []
    assert report.counts == {"cellA": 3, "cellB": 1}
    pair = report.sources["cellA"][0]
    assert pair.image == root / "cellA" / "images" / "p0.tiff"
    assert pair.mask == root / "cellA" / "masks" / "p0.tiff"
    assert pair.source == "cellA"
    image, mask, notes = read_pair(pair)
    expected_image, expected_mask = _patch(0)
    np.testing.assert_array_equal(image, expected_image)
    np.testing.assert_array_equal(mask, expected_mask)
    assert mask.dtype == np.int32 and notes == []
    # empanada reads masks as int32: that is what we store.
    assert tifffile.imread(pair.mask).dtype == np.int32


def test_append_to_existing_set(tmp_path):
    root = _make_set(tmp_path / "train")
    name = next_pair_name(root, "cellB")
    assert name == "patch_0000"
    write_pair(root, "cellB", name, *_patch(5))
    assert next_pair_name(root, "cellB") == "patch_0001"
    with pytest.raises(DatasetError, match="already exists"):
        write_pair(root, "cellB", "p0", *_patch(6), overwrite=False)
    assert scan_dataset(root).counts == {"cellA": 3, "cellB": 2}


def test_write_pair_rejects_bad_input(tmp_path):
    image, mask = _patch()
    with pytest.raises(DatasetError, match="uint8"):
        write_pair(tmp_path, "s", "n", image.astype(np.uint16), mask)
    with pytest.raises(DatasetError, match="shape"):
        write_pair(tmp_path, "s", "n", image, mask[:10])
    with pytest.raises(DatasetError, match="integer"):
        write_pair(tmp_path, "s", "n", image, mask.astype(np.float32))
    with pytest.raises(DatasetError, match="source"):
        write_pair(tmp_path, "../up", "n", image, mask)
    with pytest.raises(DatasetError, match="patch name"):
        write_pair(tmp_path, "s", ".hidden", image, mask)
    assert not any(tmp_path.rglob("*.tiff"))


def test_stray_files_are_ignored(tmp_path):
    root = _make_set(tmp_path / "train", (("cellA", 2),))
    images = root / "cellA" / "images"
    (images / "Thumbs.db").write_bytes(b"junk")
    (images / "desktop.ini").write_text("[x]")
    (images / ".DS_Store").write_bytes(b"junk")
    (images / "._p0.tiff").write_bytes(b"apple double")
    (images / "notes.txt").write_text("my notes")
    (root / ".hidden_source").mkdir()
    (root / "README.md").write_text("about")
    report = scan_dataset(root)
    assert report.problems == []
    assert report.counts == {"cellA": 2}
    assert any("notes.txt" in note for note in report.notes)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="minisblack" if array.ndim != 3 or array.shape[-1] != 3 else "rgb")


def test_each_problem_names_its_file(tmp_path):
    root = tmp_path / "train"
    image, mask = _patch()
    src = root / "src"
    _write(src / "images" / "no_mask.tiff", image)
    _write(src / "images" / "shape.tiff", image)
    _write(src / "masks" / "shape.tiff", mask[:16])
    _write(src / "images" / "stack.tiff", np.stack([image, image]))
    _write(src / "masks" / "stack.tiff", mask)
    _write(src / "images" / "float.tiff", image.astype(np.float32))
    _write(src / "masks" / "float.tiff", mask)
    _write(src / "images" / "floatmask.tiff", image)
    _write(src / "masks" / "floatmask.tiff", mask.astype(np.float32))
    _write(src / "images" / "broken.tiff", image)
    (src / "masks" / "broken.tiff").write_bytes(b"II*\x00garbage")
    _write(src / "images" / "ok.tiff", image)
    _write(src / "masks" / "ok.tiff", mask.astype(np.uint16))  # any integer dtype is fine
    _write(src / "masks" / "orphan.tiff", mask)
    report = validate_roots([root])
    text = "\n".join(report.problems)
    for name in ("no_mask.tiff", "shape.tiff", "stack.tiff", "images/float.tiff", "masks/floatmask.tiff",
                 "broken.tiff"):
        assert name in text, name
    assert len(report.problems) == 6
    assert report.counts == {"src": 1}
    assert any("orphan.tiff" in note for note in report.notes)
    with pytest.raises(DatasetError, match="no_mask.tiff"):
        report.raise_if_problems()


def test_rgb_and_16bit_are_converted_with_notes(tmp_path):
    root = tmp_path / "train"
    image, mask = _patch()
    rgb = np.repeat(image[..., None], 3, axis=2)
    _write(root / "s" / "images" / "rgb.tiff", rgb)
    _write(root / "s" / "masks" / "rgb.tiff", mask.astype(np.uint8))
    _write(root / "s" / "images" / "deep.tiff", image.astype(np.uint16) * 200)
    _write(root / "s" / "masks" / "deep.tiff", mask.astype(np.int64))
    report = scan_dataset(root)
    assert report.problems == []
    assert any("rgb.tiff" in n and "gray" in n for n in report.notes)
    assert any("deep.tiff" in n and "8-bit" in n for n in report.notes)
    by_name = {p.image.name: p for p in report.pairs}
    gray, labels, notes = read_pair(by_name["rgb.tiff"])
    np.testing.assert_array_equal(gray, image)
    assert labels.dtype == np.int32 and any("gray" in n for n in notes)
    scaled, labels, notes = read_pair(by_name["deep.tiff"])
    assert scaled.dtype == np.uint8 and labels.dtype == np.int32
    assert any("16-bit" in n for n in notes)


def test_layout_mistakes(tmp_path):
    assert "does not exist" in scan_dataset(tmp_path / "missing").problems[0]
    source = _make_set(tmp_path / "train") / "cellA"
    problems = scan_dataset(source).problems
    assert len(problems) == 1 and "single source folder" in problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no source folders" in scan_dataset(empty).problems[0]
    (tmp_path / "half" / "s" / "images").mkdir(parents=True)
    assert "no masks/ folder" in scan_dataset(tmp_path / "half").problems[0]
    assert validate_roots([]).problems


def test_several_roots_keep_same_named_sources_apart(tmp_path):
    a = _make_set(tmp_path / "a", (("cell", 2),))
    b = _make_set(tmp_path / "b", (("cell", 1), ("other", 1)))
    report = validate_roots([a, b])
    assert report.problems == []
    assert report.counts == {"a/cell": 2, "b/cell": 1, "other": 1}
    assert all(p.source == "a/cell" for p in report.sources["a/cell"])


def test_source_weights():
    weights = source_weights([100, 10, 1], gamma=0.7)
    raw = np.array([(1 / 100) ** 0.7, (1 / 10) ** 0.7, 1.0])
    np.testing.assert_allclose(weights, raw / raw.sum())
    assert weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(source_weights({"a": 5, "b": 50}, gamma=0), [0.5, 0.5])
    np.testing.assert_allclose(source_weights([4, 1], gamma=1), [0.2, 0.8])
    with pytest.raises(DatasetError):
        source_weights([3, 0])
    assert source_weights([]).size == 0


def test_read_pair_errors_name_the_file(tmp_path):
    image, mask = _patch()
    _write(tmp_path / "i.tiff", image)
    _write(tmp_path / "m.tiff", mask[:8])
    with pytest.raises(DatasetError, match="m.tiff"):
        read_pair(Pair(tmp_path / "i.tiff", tmp_path / "m.tiff"))
    with pytest.raises(DatasetError, match="gone.tiff"):
        read_pair(Pair(tmp_path / "gone.tiff", tmp_path / "m.tiff"))


def test_shipped_demo_data_is_valid():
    from empanada_desktop.core.imageio import read_image
    from empanada_desktop.core.resources import demo_dir

    report = scan_dataset(demo_dir() / "training_set")
    assert report.problems == [] and report.notes == []
    assert report.counts == {"demo_stack": 8, "second_acquisition": 8}
    image, mask, _ = read_pair(report.pairs[0])
    assert image.shape == (128, 128) and mask.max() >= 1
    stack = read_image(demo_dir() / "em_stack.tif")
    labels = read_image(demo_dir() / "em_stack_labels.tif")
    assert isinstance(stack, np.memmap) and stack.shape == (8, 256, 256) and stack.dtype == np.uint8
    assert labels.shape == stack.shape and labels.dtype == np.int32 and labels.max() >= 10
    # Mitochondria are darker than the cytoplasm around them, as in EM.
    assert stack[labels > 0].mean() < stack[labels == 0].mean() - 20
