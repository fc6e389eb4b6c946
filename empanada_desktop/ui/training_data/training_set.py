"""The training set being built: picked patches, their masks, saving to empanada's layout.

``TrainingSet`` holds the patches (each its own uint8 image and int32 labels, so a set reopened
from disk works like a freshly picked one). Saving writes ``<root>/<source>/images|masks/<name>.tiff``
through ``core.dataset.write_pair`` (int32 masks); an optional validation share goes to the
sibling folder ``<root>_val`` in the same layout. The gallery panel is in ``training_gallery.py``.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from empanada_desktop.core.errors import DatasetError
from empanada_desktop.core.patches import PatchBox

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Patch:
    """One training example: a 2D patch, or a 5-slice flipbook whose middle slice is annotated."""

    source: str  # the dataset's source folder (the image it came from)
    name: str  # file name stem
    image: np.ndarray  # (h, w) or (5, h, w) uint8
    labels: np.ndarray  # int32, same shape as image
    origin: dict = field(default_factory=dict)  # plane, index, row, col, size, path
    done: bool = False  # the user accepted it as annotated (also when it has no objects)

    @property
    def middle(self) -> int | None:
        return self.image.shape[0] // 2 if self.image.ndim == 3 else None

    @property
    def image2d(self) -> np.ndarray:
        return self.image if self.middle is None else self.image[self.middle]

    @property
    def mask(self) -> np.ndarray:
        return self.labels if self.middle is None else self.labels[self.middle]

    @property
    def annotated(self) -> bool:
        return self.done or bool(self.mask.any())

    @property
    def box(self) -> PatchBox | None:
        """Where the patch was cut from (None for a patch read from a saved set)."""
        o = self.origin
        if "plane" not in o:
            return None
        return PatchBox(o["plane"], int(o["index"]), int(o["row"]), int(o["col"]), int(o["size"]))


class TrainingSet(QObject):
    """An ordered list of patches with the folder it was last saved to or opened from."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.patches: list[Patch] = []
        self.root: Path | None = None
        self.unsaved = False  # changed since the last save or load
        self.changed.connect(self._touched)

    def _touched(self) -> None:
        self.unsaved = bool(self.patches)

    def add(self, patches: list[Patch]) -> None:
        names = {(p.source, p.name) for p in self.patches}
        self.patches.extend(p for p in patches if (p.source, p.name) not in names)
        self.changed.emit()

    def remove(self, index: int) -> None:
        del self.patches[index]
        self.changed.emit()

    def clear(self) -> None:
        self.patches = []
        self.changed.emit()

    def annotated_count(self) -> int:
        return sum(p.annotated for p in self.patches)

    def count_text(self) -> str:
        return f"annotated {self.annotated_count()} / {len(self.patches)}"

    # -- empanada layout ---------------------------------------------------------------------
    @staticmethod
    def validation_count(val_fraction: float, annotated: int) -> int:
        """How many of ``annotated`` patches a share of ``val_fraction`` holds out (one is always
        left for training)."""
        n_val = int(round(val_fraction * annotated)) if val_fraction > 0 else 0
        return n_val - 1 if n_val and n_val == annotated else n_val

    def save(self, root: str | Path, *, val_fraction: float = 0.0, seed: int = 0) -> dict:
        """Write the annotated patches to ``root`` (appending to a set already there).

        Returns counts ``{"train": n, "val": m, "skipped": k}``, plus ``"suggestions"``: the CSV
        listing accepted suggestions, when one was written; un-annotated patches are skipped.
        """
        from empanada_desktop.core.dataset import write_pair

        root = Path(root)
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"The validation share must be between 0 and 0.9, not {val_fraction}.")
        ready = [p for p in self.patches if p.annotated]
        if not ready:
            raise DatasetError("No patch is annotated yet: paint at least one patch (or mark it done) "
                               "before saving the training set.")
        order = np.random.default_rng(seed).permutation(len(ready))
        n_val = self.validation_count(val_fraction, len(ready))
        val_ids = {int(i) for i in order[:n_val]}
        val_root = root.with_name(root.name + "_val")
        for i, patch in enumerate(ready):
            target = val_root if i in val_ids else root
            write_pair(target, patch.source, patch.name, np.ascontiguousarray(patch.image2d, np.uint8),
                       np.ascontiguousarray(patch.mask, np.int32))
        suggestions = self._save_suggestion_list(root, ready)
        self.root = root
        self.changed.emit()
        self.unsaved = False
        log.info("saved %d patches to %s (%d to %s)", len(ready) - n_val, root, n_val, val_root)
        counts = {"train": len(ready) - n_val, "val": n_val, "skipped": len(self.patches) - len(ready)}
        return counts | ({"suggestions": suggestions} if suggestions is not None else {})

    @staticmethod
    def _save_suggestion_list(root: Path, ready: list[Patch]) -> Path | None:
        """Accepted suggestions not yet listed in ``root``: their positions and scores go to
        ``root/suggestions.csv`` (``-2``, ... when taken), as ``empanada-desktop suggest`` writes."""
        from empanada_desktop.core.suggestions_file import free_csv_path, suggestion_row, write_suggestions_csv

        new = [p for p in ready if "suggestion" in p.origin and p.origin.get("listed_in") != str(root)]
        if not new:
            return None
        signals = sorted({name for p in new for name in p.origin["suggestion"].get("signals", {})})
        rows = [suggestion_row(p.origin["suggestion"]["rank"], p.origin["suggestion"]["score"], p.source,
                               f"{p.name}.tiff", p.box, p.origin["suggestion"].get("signals", {})) for p in new]
        path = write_suggestions_csv(free_csv_path(root), rows, signals)
        for patch in new:
            patch.origin["listed_in"] = str(root)
        return path

    def load(self, root: str | Path) -> list[str]:
        """Replace the patches by those of a saved set; returns notes about what was read."""
        from empanada_desktop.core.dataset import read_pair, scan_dataset

        root = Path(root)
        report = scan_dataset(root)
        if report.problems:
            raise DatasetError(f"{root} is not a readable training set: " + "; ".join(report.problems))
        patches, notes = [], list(report.notes)
        for source, pairs in sorted(report.sources.items()):
            for pair in pairs:
                image, mask, pair_notes = read_pair(pair)
                notes.extend(pair_notes)
                patches.append(Patch(source, Path(pair.image).stem, np.asarray(image, np.uint8),
                                     np.array(mask, np.int32), {"path": str(pair.image)}, done=True))
        if not patches:
            raise DatasetError(f"{root} holds no image/mask pairs; choose the folder that holds the "
                               "source folders (each with images/ and masks/).")
        self.patches = patches
        self.root = root
        self.changed.emit()
        self.unsaved = False
        return notes

    # -- autosave ----------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """All patches as one .npz (for autosave)."""
        arrays = {}
        meta = []
        for i, p in enumerate(self.patches):
            arrays[f"image_{i}"] = p.image
            arrays[f"labels_{i}"] = p.labels
            meta.append({"source": p.source, "name": p.name, "origin": p.origin, "done": p.done})
        arrays["meta"] = np.frombuffer(json.dumps({"patches": meta, "root": str(self.root or "")})
                                       .encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    def from_bytes(self, data: bytes) -> None:
        with np.load(io.BytesIO(data)) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode())
            self.patches = [
                Patch(m["source"], m["name"], arrays[f"image_{i}"].copy(), arrays[f"labels_{i}"].copy(),
                      m.get("origin", {}), m.get("done", False))
                for i, m in enumerate(meta["patches"])
            ]
        self.root = Path(meta["root"]) if meta.get("root") else None
        self.changed.emit()
