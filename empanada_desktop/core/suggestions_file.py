"""The list of suggested patches on disk, and the patches a training set already holds.

``suggestions.csv`` (written by ``empanada-desktop suggest``) has one row per suggested patch:
``rank, score, source, name, plane, index, row, col, size, z, y, x`` and one column per
uncertainty signal. ``z, y, x`` is the patch's top-left voxel in the (Z, Y, X) volume;
``plane, index, row, col`` the same in the slice it was cut from.

The patches a training set already holds are known from their file names: the app and this
command name patches ``<stem>-<plane><index>-r<row>-c<col>-s<size>`` (``core.patches.patch_name``),
and from the ``suggestions*.csv`` files in the set's folder.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from empanada_desktop.core.atomic import write_text
from empanada_desktop.core.errors import DatasetError
from empanada_desktop.core.patches import PLANES, PatchBox
from empanada_desktop.core.suggest_ranking import box_origin_zyx

BASE_COLUMNS = ("rank", "score", "source", "name", "plane", "index", "row", "col", "size", "z", "y", "x")
_NAME = re.compile(r"^(?P<stem>.+)-(?P<plane>xy|xz|yz)(?P<index>\d+)-r(?P<row>\d+)-c(?P<col>\d+)-s(?P<size>\d+)$")


def parse_patch_name(name: str) -> tuple[str, PatchBox] | None:
    """``(stem, box)`` from a patch file name made by ``patch_name`` (suffix allowed); else None."""
    stem = Path(name).stem if Path(name).suffix.lower() in (".tif", ".tiff") else name
    match = _NAME.match(stem)
    if match is None:
        return None
    return match["stem"], PatchBox(match["plane"], int(match["index"]), int(match["row"]),
                                   int(match["col"]), int(match["size"]))


def suggestions_csv_text(rows: Sequence[Mapping[str, object]], signal_names: Sequence[str] = ()) -> str:
    """CSV text of suggestion rows (each with the BASE_COLUMNS keys and the signals)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*BASE_COLUMNS, *signal_names], lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()


def suggestion_row(rank: int, score: float, source: str, name: str, box: PatchBox,
                   signals: Mapping[str, float] = ()) -> dict:
    """One CSV row for a suggested patch."""
    z, y, x = box_origin_zyx(box)
    row = {"rank": rank, "score": score, "source": source, "name": name, "plane": box.plane,
           "index": box.index, "row": box.row, "col": box.col, "size": box.size, "z": z, "y": y, "x": x}
    row.update(dict(signals))
    return row


def write_suggestions_csv(path: str | os.PathLike[str], rows: Sequence[Mapping[str, object]],
                          signal_names: Sequence[str] = ()) -> Path:
    """Write the CSV atomically; refuses to replace an existing file."""
    path = Path(path)
    if path.exists():
        raise DatasetError(f"{path} already exists; choose another output folder or remove it first.")
    write_text(path, suggestions_csv_text(rows, signal_names))
    return path


def free_csv_path(folder: str | os.PathLike[str], stem: str = "suggestions") -> Path:
    """``<folder>/suggestions.csv``, or ``suggestions-2.csv``, ... when it is taken."""
    folder = Path(folder)
    candidate = folder / f"{stem}.csv"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{number}.csv"
        number += 1
    return candidate


def read_suggestions_csv(path: str | os.PathLike[str]) -> list[tuple[str, PatchBox]]:
    """``(source, box)`` of every row of a suggestions CSV; DatasetError naming the bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from None
    out = []
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            plane = row["plane"]
            if plane not in PLANES:
                raise ValueError(f"plane {plane!r}")
            box = PatchBox(plane, int(row["index"]), int(row["row"]), int(row["col"]), int(row["size"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(
                f"{path} line {number} is not a suggestion row ({error}); it needs the columns "
                "plane, index, row, col and size."
            ) from None
        out.append((row.get("source") or "", box))
    return out


def labelled_boxes(roots: Iterable[str | os.PathLike[str]], stem: str) -> list[PatchBox]:
    """The patch boxes of image ``stem`` that the training sets under ``roots`` already hold.

    Reads patch file names (``<stem>-xy0003-r64-c128-s256.tiff``) in ``<root>/<source>/images``
    and ``<root>/<source>/masks``, and ``<root>/suggestions*.csv`` rows whose source is ``stem``.
    Missing folders hold nothing.
    """
    boxes: list[PatchBox] = []
    seen: set[PatchBox] = set()

    def add(box: PatchBox) -> None:
        if box not in seen:
            seen.add(box)
            boxes.append(box)

    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for csv_path in sorted(root.glob("suggestions*.csv")):
            for source, box in read_suggestions_csv(csv_path):
                if source == stem:
                    add(box)
        for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for sub in ("images", "masks"):
                folder = source_dir / sub
                if not folder.is_dir():
                    continue
                for path in sorted(folder.iterdir()):
                    parsed = parse_patch_name(path.name)
                    if parsed is not None and parsed[0] == stem:
                        add(parsed[1])
    return boxes


def _cell(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
