"""Opening data for the window: image files, folders of 2D images, labels, the demo volume.

Reading itself is ``core.imageio.read_image`` (memory-mapped where possible); this module adds
what the window needs on top: folders as a "2D stack" of unrelated images (padded to a common
size, their names kept) and a generated stand-in when the demo file is not installed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import ImageReadError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def read_any(path: str | Path) -> np.ndarray:
    """Read one image file through core.imageio, turning every failure into ImageReadError."""
    from empanada_desktop.core.imageio import read_image

    path = Path(path)
    try:
        image = read_image(path, mmap=True)
    except ImageReadError:
        raise
    except (OSError, ValueError, RuntimeError, MemoryError) as error:  # damaged files
        raise ImageReadError(
            f"Cannot read {path.name}: {error}. The file may be truncated or not an image; "
            "open a 2D TIFF/PNG/JPEG or a 3D TIFF stack."
        ) from error
    return check_image(image, path)


def check_image(image: np.ndarray, path: str | Path) -> np.ndarray:
    name = Path(path).name
    if image.ndim not in (2, 3):
        raise ImageReadError(
            f"{name} has {image.ndim} dimensions (shape {tuple(image.shape)}); the app opens "
            "2D images and 3D stacks (Z, H, W). Split channels or time points first."
        )
    if 0 in image.shape:
        raise ImageReadError(f"{name} is empty (shape {tuple(image.shape)}); choose another file.")
    return image


def image_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def read_folder_stack(folder: str | Path) -> tuple[np.ndarray, list[str], list[tuple[int, int]]]:
    """Read a folder of unrelated 2D images as one (N, H, W) stack, padded with zeros.

    Returns the stack, the file names and each image's own (rows, cols). Images of different sizes are padded at the bottom and
    right to the largest size; every image must be 2D and all must share one dtype.
    """
    folder = Path(folder)
    files = image_files(folder)
    if not files:
        raise ImageReadError(
            f"The folder {folder} holds no TIFF, PNG or JPEG images; choose a folder of 2D images."
        )
    images = []
    for file in files:
        image = np.asarray(read_any(file))
        if image.ndim != 2:
            raise ImageReadError(
                f"{file.name} in {folder} is not a 2D image (shape {image.shape}); a 2D stack folder "
                "must hold only 2D images. Open 3D stacks as files instead."
            )
        images.append(image)
    dtypes = {im.dtype for im in images}
    if len(dtypes) > 1:
        raise ImageReadError(
            f"The images in {folder} mix pixel types ({', '.join(sorted(map(str, dtypes)))}); "
            "convert them to one bit depth first."
        )
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    stack = np.zeros((len(images), height, width), dtype=images[0].dtype)
    for i, image in enumerate(images):
        stack[i, : image.shape[0], : image.shape[1]] = image
    return stack, [f.name for f in files], [im.shape for im in images]


def read_labels(path: str | Path) -> np.ndarray:
    labels = np.asarray(read_any(path))
    if not np.issubdtype(labels.dtype, np.integer):
        raise ImageReadError(
            f"{Path(path).name} holds {labels.dtype} values; a labels file must hold whole numbers "
            "(0 = background, 1..N = objects)."
        )
    return labels


def synthetic_em(shape: tuple[int, int, int] = (16, 256, 256), seed: int = 0,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A small EM-like uint8 volume with dark, membrane-rimmed ellipsoids, and their labels."""
    rng = np.random.default_rng(seed)
    z, h, w = shape
    zz, yy, xx = np.mgrid[0:z, 0:h, 0:w].astype(np.float32)
    image = np.full(shape, 175.0, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    n_objects = max(3, (h * w) // 5000)
    label = 0
    for _attempt in range(n_objects * 5):
        if label == n_objects:
            break
        cz, cy, cx = rng.uniform(0, z), rng.uniform(12, h - 12), rng.uniform(12, w - 12)
        rz, ry, rx = rng.uniform(3, 8), rng.uniform(6, 16), rng.uniform(10, 28)
        angle = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        r = np.sqrt(((zz - cz) / rz) ** 2 + (u / rx) ** 2 + (v / ry) ** 2)
        if (labels[r < 1.15] != 0).any():
            continue  # keep objects apart, like real mitochondria
        label += 1
        image[(r >= 0.8) & (r < 1.0)] = 55.0  # dark double membrane
        inner = r < 0.8
        image[inner] = 120.0 + 35.0 * (np.sin(u[inner] / 1.5) > 0.6)  # cristae-like stripes
        labels[r < 1.0] = label
    image += rng.normal(0, 9, size=shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def demo_path() -> Path | None:
    """resources/demo/em_stack.tif, or None where the demo data is not installed."""
    from empanada_desktop.core.resources import demo_dir

    path = Path(demo_dir()) / "em_stack.tif"
    return path if path.is_file() else None


def demo_image() -> tuple[np.ndarray, Path | None]:
    """The demo volume and its path, or a generated volume and None."""
    path = demo_path()
    if path is not None:
        try:
            return read_any(path), path
        except ImageReadError as error:
            log.warning("demo data unreadable, using generated data: %s", error)
    image, _ = synthetic_em()
    return image, None
