"""empanada's training-set layout (docs/EMPANADA_FORMATS.md section 1): scan, check, read, write.

::

    <root>/<source>/images/<name>.tiff   2D uint8 image
    <root>/<source>/masks/<name>.tiff    2D instance labels (0 = background), same H x W

Scanning never raises: it returns a :class:`DatasetReport` whose ``problems`` each name a file
and say what to do, and whose ``notes`` say what will be converted on reading (colour to gray,
16-bit to 8-bit). Hidden files, ``Thumbs.db`` and ``desktop.ini`` are not images (empanada counts
them, and then crashes). We read masks of any integer type and write int32, which empanada
needs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empanada_desktop.core.errors import DatasetError, ImageReadError
from empanada_desktop.core.imageio import IMAGE_SUFFIXES, read_image, to_uint8, write_tiff

log = logging.getLogger(__name__)

IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
_NAME_RE = re.compile(r"^[^./\\][^/\\]*$")
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its mask file."""

    image: Path
    mask: Path
    source: str = ""


@dataclass
class DatasetReport:
    """What :func:`scan_dataset` found: pairs by source, problems to fix, conversion notes."""

    sources: dict[str, list[Pair]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {source: len(pairs) for source, pairs in self.sources.items()}

    @property
    def n_pairs(self) -> int:
        return sum(len(pairs) for pairs in self.sources.values())

    @property
    def pairs(self) -> list[Pair]:
        return [pair for pairs in self.sources.values() for pair in pairs]

    def raise_if_problems(self, what: str = "training data") -> None:
        """Raise DatasetError listing the problems (at most 20), if there are any."""
        if self.problems:
            shown = self.problems[:20]
            more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            raise DatasetError(f"The {what} has problems; fix them and try again:\n  " + "\n  ".join(shown) + more)


def is_ignored(path: Path) -> bool:
    """Hidden files and the files Windows and macOS drop into folders are not data."""
    return path.name.startswith(".") or path.name.lower() in IGNORED_NAMES


def scan_dataset(root: str | os.PathLike[str], *, check_contents: bool = True) -> DatasetReport:
    """Find and check the image/mask pairs under ``root``; see the module docstring.

    Args:
        root: the dataset folder holding one folder per source.
        check_contents: also read every pair to check dimensions, types and shapes.
    """
    report = DatasetReport()
    _scan_into(Path(root), report, check_contents, clashing=set())
    return report


def validate_roots(roots: Iterable[str | os.PathLike[str]], *, check_contents: bool = True) -> DatasetReport:
    """Scan several dataset folders as one (empanada's ``additional_train_dirs``).

    Sources with the same folder name in different roots are kept apart as ``<root>/<source>``.
    Raises nothing; callers raise DatasetError when ``problems`` is not empty.
    """
    roots = [Path(r) for r in roots]
    report = DatasetReport()
    if not roots:
        report.problems.append("No dataset folder was given; choose at least one folder in empanada's layout.")
        return report
    names: dict[str, int] = {}
    for root in roots:
        for source in _source_dirs(root):
            names[source.name] = names.get(source.name, 0) + 1
    clashing = {name for name, count in names.items() if count > 1}
    for root in roots:
        _scan_into(root, report, check_contents, clashing=clashing)
    return report


def source_weights(counts: Sequence[int] | dict[str, int], gamma: float = 0.7) -> np.ndarray:
    """Sampling weight of each pair of a source: ``(1 / count) ** gamma``, normalised to sum 1.

    Every pair of a source is drawn with its source's weight, so a source's share of the samples
    grows as ``count ** (1 - gamma)``: gamma 0 samples pairs uniformly (sources in proportion to
    their size); gamma 1 gives every source the same share however many patches it has.
    """
    values = np.asarray(list(counts.values()) if isinstance(counts, dict) else list(counts), dtype=np.float64)
    if values.size == 0:
        return values
    if np.any(values <= 0):
        raise DatasetError(f"Every source needs at least one patch; got counts {values.astype(int).tolist()}.")
    if gamma < 0:
        raise DatasetError(f"weight_gamma must not be negative, got {gamma}.")
    weights = (1.0 / values) ** float(gamma)
    return weights / weights.sum()


def write_pair(
    root: str | os.PathLike[str],
    source: str,
    name: str,
    image_uint8: np.ndarray,
    mask: np.ndarray,
    *,
    overwrite: bool = True,
) -> Pair:
    """Add (or replace) one pair in a dataset folder, atomically; the mask is stored as int32.

    The mask is written first, so an interruption can leave a mask without its image (ignored
    with a note) but never an image without its mask.
    """
    for value, what in ((source, "source"), (name, "patch name")):
        if not isinstance(value, str) or not _NAME_RE.match(value) or value in (".", ".."):
            raise DatasetError(f"'{value}' cannot be a {what}: use a plain file name (no '/' or leading '.').")
    image = np.asarray(image_uint8)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise DatasetError(f"Patch '{name}' must be a 2D uint8 image, got {image.dtype} {image.shape}.")
    labels = np.asarray(mask)
    if labels.shape != image.shape:
        raise DatasetError(f"Mask of patch '{name}' has shape {labels.shape}, its image {image.shape}.")
    labels = _int32_labels(labels, f"mask of patch '{name}'")
    file_name = name if Path(name).suffix.lower() in (".tif", ".tiff") else f"{name}.tiff"
    base = Path(root) / source
    pair = Pair(base / "images" / file_name, base / "masks" / file_name, source)
    if not overwrite and (pair.image.exists() or pair.mask.exists()):
        raise DatasetError(f"{pair.image} already exists; choose another patch name.")
    write_tiff(pair.mask, labels, compression="zlib")
    write_tiff(pair.image, image)
    return pair


def next_pair_name(root: str | os.PathLike[str], source: str, prefix: str = "patch") -> str:
    """A name ``<prefix>_<n>`` not yet used in ``root/source`` (for appending to a set)."""
    used = set()
    for sub in ("images", "masks"):
        folder = Path(root) / source / sub
        if folder.is_dir():
            used.update(p.stem for p in folder.iterdir())
    index = 0
    while f"{prefix}_{index:04d}" in used:
        index += 1
    return f"{prefix}_{index:04d}"


def read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a pair as (uint8 image, int32 mask, notes); problems raise DatasetError naming the file."""
    notes: list[str] = []
    try:
        image = read_image(pair.image, mmap=False, notes=notes)
        mask = read_image(pair.mask, mmap=False)
    except ImageReadError as error:
        raise DatasetError(str(error)) from None
    image = _squeeze_2d(image, pair.image)
    mask = _squeeze_2d(mask, pair.mask)
    if image.dtype.kind == "f":
        raise DatasetError(
            f"{pair.image} is a floating-point image; save it as 8-bit (or 16-bit) grayscale."
        )
    if mask.shape != image.shape:
        raise DatasetError(f"{pair.mask} has shape {mask.shape} but its image {pair.image} has {image.shape}.")
    image, note = to_uint8(image)
    if note:
        notes.append(f"{pair.image.name}: {note}")
    return image, _int32_labels(mask, str(pair.mask)), notes


# -- internals -------------------------------------------------------------------------------


def _source_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_ignored(p))


def _scan_into(root: Path, report: DatasetReport, check_contents: bool, clashing: set[str]) -> None:
    if not root.exists():
        report.problems.append(f"Dataset folder {root} does not exist; choose an existing folder.")
        return
    if not root.is_dir():
        report.problems.append(f"{root} is a file; choose the dataset folder that holds the source folders.")
        return
    if (root / "images").is_dir() or (root / "masks").is_dir():
        report.problems.append(
            f"{root} looks like a single source folder (it holds images/ and masks/); choose the folder "
            f"above it ({root.parent}) as the dataset."
        )
        return
    found_any = False
    for source_dir in _source_dirs(root):
        images_dir, masks_dir = source_dir / "images", source_dir / "masks"
        if not images_dir.is_dir() and not masks_dir.is_dir():
            report.notes.append(f"{source_dir} has no images/ and masks/ folders; ignored.")
            continue
        found_any = True
        if not images_dir.is_dir() or not masks_dir.is_dir():
            missing = "images" if not images_dir.is_dir() else "masks"
            report.problems.append(f"{source_dir} has no {missing}/ folder; add it or remove the source folder.")
            continue
        pairs = _pair_files(images_dir, masks_dir, report)
        if not pairs:
            report.problems.append(f"{images_dir} holds no images; add patches or remove {source_dir.name}.")
            continue
        key = f"{root.name}/{source_dir.name}" if source_dir.name in clashing else source_dir.name
        if key in report.sources:  # two roots with the same folder name, too
            key = str(source_dir)
        if check_contents:
            pairs = [p for p in pairs if _check_pair(p, report)]
        if pairs:
            report.sources[key] = [Pair(p.image, p.mask, key) for p in pairs]
    if not found_any:
        report.problems.append(
            f"{root} holds no source folders; empanada's layout is {root}/<source>/images/<name>.tiff "
            f"with a matching {root}/<source>/masks/<name>.tiff."
        )


def _image_files(folder: Path, report: DatasetReport) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_ignored(path):
            continue
        if path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
            report.notes.append(f"{path} is not a TIFF, PNG or JPEG image; ignored.")
            continue
        files[path.name] = path
    return files


def _pair_files(images_dir: Path, masks_dir: Path, report: DatasetReport) -> list[Pair]:
    images = _image_files(images_dir, report)
    masks = _image_files(masks_dir, report)
    masks_by_stem = {Path(name).stem: path for name, path in masks.items()}
    pairs, used = [], set()
    for name, image in images.items():
        mask = masks.get(name) or masks_by_stem.get(Path(name).stem)
        if mask is None:
            report.problems.append(f"{image} has no mask: add {masks_dir / name} or remove the image.")
            continue
        used.add(mask.name)
        pairs.append(Pair(image, mask, images_dir.parent.name))
    for name, mask in masks.items():
        if name not in used:
            report.notes.append(f"{mask} has no image in {images_dir}; ignored.")
    return pairs


def _check_pair(pair: Pair, report: DatasetReport) -> bool:
    notes: list[str] = []
    try:
        # Patches are small: read them whole rather than keep file handles open in memmaps.
        image = read_image(pair.image, mmap=False, notes=notes)
        mask = read_image(pair.mask, mmap=False)
    except ImageReadError as error:
        report.problems.append(str(error))
        return False
    ok = True
    for array, path in ((image, pair.image), (mask, pair.mask)):
        if array.ndim != 2 and not (array.ndim == 3 and array.shape[0] == 1):
            report.problems.append(
                f"{path} is {array.ndim}D (shape {tuple(array.shape)}); training patches must be 2D "
                "(for a stack, save only the annotated slice)."
            )
            ok = False
    if not ok:
        return False
    if image.shape[-2:] != mask.shape[-2:]:
        report.problems.append(
            f"{pair.mask} has shape {tuple(mask.shape[-2:])} but its image {pair.image.name} has "
            f"{tuple(image.shape[-2:])}; they must match pixel for pixel."
        )
        return False
    if image.dtype.kind == "f":
        report.problems.append(f"{pair.image} is a floating-point image; save it as 8-bit grayscale.")
        return False
    if mask.dtype.kind not in "biu":
        report.problems.append(f"{pair.mask} holds {mask.dtype} values; masks must be integer labels.")
        return False
    if mask.dtype.kind == "i" and mask.size and mask.min() < 0:
        report.problems.append(f"{pair.mask} has negative labels; use 0 for background and 1, 2, ... for objects.")
        return False
    if mask.dtype.kind == "u" and mask.dtype.itemsize >= 4 and mask.size and mask.max() > _INT32_MAX:
        report.problems.append(f"{pair.mask} has labels above {_INT32_MAX}; relabel the objects 1, 2, ...")
        return False
    report.notes.extend(notes)
    if image.dtype != np.uint8:
        report.notes.append(f"{pair.image}: {image.dtype} image, will be scaled to 8-bit (0.5..99.5 percentile).")
    return True


def _squeeze_2d(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise DatasetError(f"{path} is {array.ndim}D (shape {tuple(array.shape)}); training patches must be 2D.")
    return array


def _int32_labels(mask: np.ndarray, what: str) -> np.ndarray:
    if mask.dtype == np.bool_:
        return mask.astype(np.int32)
    if mask.dtype.kind not in "iu":
        raise DatasetError(f"The {what} holds {mask.dtype} values; masks must be integer labels.")
    if mask.size and (int(mask.min()) < 0 or int(mask.max()) > _INT32_MAX):
        raise DatasetError(f"The {what} has labels outside 0..{_INT32_MAX}; relabel the objects 1, 2, ...")
    return mask.astype(np.int32, copy=False)
