"""Opening data for the window: folders as padded 2D stacks, labels checks, the demo volume."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from empanada_desktop.core.errors import ImageReadError
from empanada_desktop.core.opening import (
    demo_image,
    read_any,
    read_folder_stack,
    read_labels,
    synthetic_em,
)


def test_folder_stack_is_padded_and_keeps_names(tmp_path):
    Image.fromarray(np.full((10, 12), 5, np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.full((14, 8), 9, np.uint8)).save(tmp_path / "a.png")
    (tmp_path / ".hidden.png").write_bytes(b"not read")
    stack, names, shapes = read_folder_stack(tmp_path)
    assert stack.shape == (2, 14, 12) and names == ["a.png", "b.png"]
    assert shapes == [(14, 8), (10, 12)]
    assert stack[0, :14, :8].min() == 9 and stack[0, :, 8:].max() == 0


def test_folder_of_mixed_bit_depths_is_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((4, 4), np.uint16))
    with pytest.raises(ImageReadError, match="mix pixel types"):
        read_folder_stack(tmp_path)


def test_empty_folder_and_bad_files_say_what_to_do(tmp_path):
    with pytest.raises(ImageReadError, match="holds no TIFF"):
        read_folder_stack(tmp_path)
    tifffile.imwrite(tmp_path / "4d.tif", np.ones((2, 4, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(ImageReadError, match="dimensions"):
        read_any(tmp_path / "4d.tif")
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ImageReadError, match="whole numbers"):
        read_labels(tmp_path / "float.tif")


def test_synthetic_em_has_labelled_objects():
    image, labels = synthetic_em((4, 64, 64))
    assert image.dtype == np.uint8 and image.shape == labels.shape == (4, 64, 64)
    assert labels.max() >= 1 and (image[labels > 0].mean() < image[labels == 0].mean())


def test_demo_image_is_a_volume():
    image, _path = demo_image()
    assert image.ndim == 3
