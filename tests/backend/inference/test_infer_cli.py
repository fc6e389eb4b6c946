"""``empanada-desktop infer`` and ``evaluate`` in-process on a tiny registered resnet18 model."""

import numpy as np
import pytest
import tifffile

from empanada_desktop.cli import main


@pytest.fixture
def tiny_model():
    from empanada_desktop.backend.loading import register_native_model

    register_native_model("tiny", encoder="resnet18", seed=1)
    return "tiny"


def test_infer_2d_and_3d(tmp_path, tiny_model, capsys):
    rng = np.random.default_rng(0)
    image = (rng.random((64, 80)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "slice.tif", image)
    out = tmp_path / "slice_labels.tif"
    assert main(["infer", "--model", tiny_model, str(tmp_path / "slice.tif"), "-o", str(out), "--device", "cpu"]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == image.shape and labels.dtype == np.int32

    stack = (rng.random((3, 16, 16)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    out3 = tmp_path / "stack_labels.tif"
    code = main([
        "infer", "--model", tiny_model, str(tmp_path / "stack.tif"), "-o", str(out3),
        "--device", "cpu", "--min-size", "1", "--ortho",
    ])
    assert code == 0
    with tifffile.TiffFile(out3) as tif:
        assert tif.series[0].shape == stack.shape  # a stack of label slices, not RGB
    err = capsys.readouterr().err
    # xy 3 + xz 16 + yz 16 slices, then compare, combine and write 3 slices each.
    assert "44/44" in err


def test_float_image_is_scaled_with_a_note(tmp_path, tiny_model, capsys):
    image = np.linspace(-1, 1, 48 * 48, dtype=np.float32).reshape(48, 48)
    tifffile.imwrite(tmp_path / "float.tif", image)
    out = tmp_path / "o.tif"
    assert main(["infer", "--model", tiny_model, str(tmp_path / "float.tif"), "-o", str(out), "--device", "cpu"]) == 0
    assert "float" in capsys.readouterr().err
    assert out.exists()


def test_bad_inputs_give_clear_messages(tmp_path, tiny_model, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["infer", "--model", tiny_model, str(tmp_path / "notes.txt"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "unsupported" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((8, 8), np.uint8))
    assert main(["infer", "--model", tiny_model, str(tmp_path / "img.tif"), "-o", str(tmp_path / "o.png")]) == 2
    assert ".tif" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "4d.tif", np.zeros((2, 3, 8, 8), np.uint8), photometric="minisblack")
    assert main(["infer", "--model", tiny_model, str(tmp_path / "4d.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "4d.tif" in capsys.readouterr().err
    assert main(["infer", "--model", "nope", str(tmp_path / "img.tif"), "-o", str(tmp_path / "o.tif")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["infer", "--model", tiny_model, str(tmp_path / "img.tif"), "-o", str(tmp_path / "o.tif"),
                 "--downsample", "3"]) == 2
    assert "downsample" in capsys.readouterr().err


def test_evaluate_prints_scores(tmp_path, tiny_model, capsys):
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        (tmp_path / "data" / "src" / "images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "src" / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tmp_path / "data" / "src" / "images" / f"{name}.tif", (rng.random((48, 48)) * 255).astype(np.uint8))
        mask = np.zeros((48, 48), np.int32)
        mask[10:20, 10:20] = 1
        tifffile.imwrite(tmp_path / "data" / "src" / "masks" / f"{name}.tif", mask)
    assert main(["evaluate", "--model", tiny_model, "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "IoU" in out and "PQ" in out and "F1@0.5" in out and "2 images" in out
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", "--model", tiny_model, "--data", str(tmp_path / "empty")]) == 2
