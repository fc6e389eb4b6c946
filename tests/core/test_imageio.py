"""imageio: TIFF (memory-mapped, BigTIFF, compressed), PNG/JPEG, gray conversion, 8-bit scaling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.imageio import read_image, to_uint8, write_tiff
from empanada_desktop.core.volumes.opening import open_volume


def _volume(shape=(4, 32, 48), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


def test_write_then_read_3d_is_memory_mapped(tmp_path):
    volume = _volume()
    path = write_tiff(tmp_path / "sub" / "stack.tif", volume)
    read = read_image(path)
    assert isinstance(read, np.memmap)
    assert read.shape == (4, 32, 48) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, volume)
    assert not read.flags.writeable
    assert not list((tmp_path / "sub").glob(".*tmp"))  # atomic write left no temporary file


def test_no_mmap_and_compressed_files_are_read_into_memory(tmp_path):
    labels = np.arange(3 * 16 * 16, dtype=np.int32).reshape(3, 16, 16)
    path = write_tiff(tmp_path / "labels.tif", labels, compression="zlib")
    read = read_image(path)
    assert not isinstance(read, np.memmap)
    np.testing.assert_array_equal(read, labels)
    plain = write_tiff(tmp_path / "plain.tif", labels)
    assert not isinstance(read_image(plain, mmap=False), np.memmap)


def test_single_page_is_2d_and_open_volume_adds_z(tmp_path):
    image = _volume((1, 20, 30))
    path = write_tiff(tmp_path / "one.tif", image[0])
    assert read_image(path).shape == (20, 30)
    assert open_volume(path).shape == (1, 20, 30)
    # A 3-slice stack must not be mistaken for an RGB image.
    stack = write_tiff(tmp_path / "three.tif", _volume((3, 20, 30)))
    assert read_image(stack).shape == (3, 20, 30)


def test_bigtiff(tmp_path):
    volume = _volume((2, 16, 16), np.uint16)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, volume, bigtiff=True, photometric="minisblack")
    read = read_image(path)
    assert isinstance(read, np.memmap)
    np.testing.assert_array_equal(read, volume)


def test_rgb_tiff_png_jpeg_become_gray(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    expected = round(0.299 * 200 + 0.587 * 100)
    for name in ("rgb.tif", "rgb.png", "rgb.jpg"):
        notes: list[str] = []
        gray = read_image(tmp_path / name, notes=notes)
        assert gray.shape == (10, 12) and gray.dtype == np.uint8, name
        assert abs(int(np.median(gray)) - expected) <= 3, name
        assert notes and "gray" in notes[0], name


def test_gray_png_16bit(tmp_path):
    image = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(image).save(tmp_path / "g16.png")
    read = read_image(tmp_path / "g16.png")
    assert read.shape == (8, 8)
    np.testing.assert_array_equal(read.astype(np.int64), image.astype(np.int64))


@pytest.mark.parametrize("size", [None, 0, 100, "half"])
def test_damaged_files_name_the_file(tmp_path, size):
    good = write_tiff(tmp_path / "good.tif", _volume((4, 64, 64)))
    path = tmp_path / "bad.tif"
    data = good.read_bytes()
    if size is None:
        path.write_bytes(b"this is not a tiff at all")
    else:
        path.write_bytes(data[: len(data) // 2] if size == "half" else data[:size])
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_missing_unsupported_and_4d(tmp_path):
    with pytest.raises(ImageReadError, match="does not exist"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    with pytest.raises(ImageReadError, match="unsupported type"):
        read_image(tmp_path / "x.bmp")
    tifffile.imwrite(tmp_path / "4d.tif", np.zeros((2, 5, 16, 16), np.uint8), photometric="minisblack")
    with pytest.raises(ImageReadError, match="4 dimensions") as info:
        read_image(tmp_path / "4d.tif")
    assert "4d.tif" in str(info.value)
    with pytest.raises(ImageReadError, match="2D or 3D"):
        write_tiff(tmp_path / "w.tif", np.zeros((2, 2, 2, 2)))
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(bad_png)


def test_to_uint8_passes_uint8_and_scales_16bit_with_a_note():
    image = _volume((16, 16))
    same, note = to_uint8(image)
    assert note is None and same.dtype == np.uint8
    np.testing.assert_array_equal(same, image)

    ramp = np.linspace(1000, 50000, 200 * 200).reshape(200, 200).astype(np.uint16)
    scaled, note = to_uint8(ramp)
    assert scaled.dtype == np.uint8 and scaled.shape == ramp.shape
    assert "16-bit" in note and "percentile" in note
    assert scaled.min() == 0 and scaled.max() == 255
    assert np.all(np.diff(scaled.ravel().astype(int)) >= 0)  # monotone: order is kept

    small, note = to_uint8(np.array([[0, 7], [200, 255]], np.uint16))
    np.testing.assert_array_equal(small, [[0, 7], [200, 255]])
    assert "kept" in note


def test_to_uint8_float_nan_constant_rgb_and_volume():
    values = np.linspace(-1, 1, 100, dtype=np.float32).reshape(10, 10)
    values[0, 0] = np.nan
    out, note = to_uint8(values)
    assert out[0, 0] == 0 and out.max() == 255 and "float" in note
    flat, _ = to_uint8(np.full((8, 8), 3.5))
    assert flat.dtype == np.uint8
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 1] = 100
    gray, note = to_uint8(rgb)
    assert gray.shape == (6, 7) and "gray" in note and int(gray[0, 0]) == round(0.587 * 100)
    volume = np.stack([np.full((9, 9), v, np.uint16) for v in (0, 1000, 2000, 60000)])
    out, note = to_uint8(volume)
    assert out.shape == volume.shape and out[0].max() == 0 and out[-1].min() == 255
