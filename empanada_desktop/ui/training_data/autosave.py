"""Never lose work: annotations autosave to ``app_home()/autosave`` and are offered back.

Saved after each finished stroke (coalesced) and every 30 seconds while there are unsaved
changes: ``session.json`` (what was open), ``labels.npz`` (only the 64^3 blocks that were
edited, so a huge volume costs what was painted) and ``patches.npz`` (the training set). Every
file is written atomically. A normal quit removes them; after a crash they are still there and
the next launch offers to restore them.
"""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer

from empanada_desktop.core.atomic import write_bytes, write_text
from empanada_desktop.core.errors import describe_os_error
from empanada_desktop.core.paths import autosave_dir
from empanada_desktop.ui.training_data.training_set import TrainingSet
from empanada_desktop.ui.viewer.document import CHUNK, Document

log = logging.getLogger(__name__)
INTERVAL_MS = 30_000
SESSION, LABELS, PATCHES = "session.json", "labels.npz", "patches.npz"
GENERATED_DEMO = "demo (generated)"


class Autosaver(QObject):
    """Watches a document and a training set and writes them to the autosave folder."""

    def __init__(self, document: Document, training_set: TrainingSet, directory: Path | None = None,
                 interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.document = document
        self.training_set = training_set
        self.directory = Path(directory) if directory else autosave_dir()
        self.dirty = False
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.save_if_dirty)
        self.timer.start()
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(0)  # after the event that finished the stroke, once per burst
        self._soon.timeout.connect(self.save_if_dirty)
        document.labelsEdited.connect(self._mark_dirty)
        training_set.changed.connect(self._mark_dirty)

    def _mark_dirty(self, *_args) -> None:
        self.dirty = True

    def stroke_finished(self) -> None:
        """Connect annotation controllers' ``strokeFinished`` here: saves right after."""
        self.dirty = True
        self._soon.start()

    def save_if_dirty(self) -> bool:
        if not self.dirty:
            return False
        self.save_now()
        return True

    def save_now(self) -> None:
        doc = self.document
        session = {"time": time.time(), "image_path": str(doc.path) if doc.path else None,
                   "labels_path": str(doc.labels_path) if doc.labels_path else None,
                   "shape": list(doc.image.shape) if doc.image is not None else None,
                   "plane": doc.plane, "index": doc.index, "chunk": CHUNK,
                   "has_labels": bool(doc.edited_chunks), "patches": len(self.training_set.patches)}
        try:
            if doc.labels is not None and doc.edited_chunks:
                write_bytes(self.directory / LABELS, _chunks_bytes(doc))
            if self.training_set.patches:
                write_bytes(self.directory / PATCHES, self.training_set.to_bytes())
            write_text(self.directory / SESSION, json.dumps(session, indent=1))  # last: marks complete
        except OSError as error:  # a full or read-only disk: keep the work dirty and try again later
            log.warning("autosave failed: %s", describe_os_error(error))
            return
        self.dirty = False
        log.debug("autosaved to %s", self.directory)

    def discard(self) -> None:
        """Remove the autosave (normal quit, or the user declined to restore)."""
        discard(self.directory)
        self.dirty = False


def _chunks_bytes(doc: Document) -> bytes:
    labels3d = doc.labels if doc.labels.ndim == 3 else doc.labels[np.newaxis]
    arrays = {}
    for cz, cy, cx in sorted(doc.edited_chunks):
        block = labels3d[cz * CHUNK:(cz + 1) * CHUNK, cy * CHUNK:(cy + 1) * CHUNK, cx * CHUNK:(cx + 1) * CHUNK]
        arrays[f"{cz}_{cy}_{cx}"] = block
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def pending(directory: Path | None = None) -> dict | None:
    """The autosaved session left by a crash, or None."""
    directory = Path(directory) if directory else autosave_dir()
    path = directory / SESSION
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("ignoring an unreadable autosave %s", path)
        return None


def discard(directory: Path | None = None) -> None:
    directory = Path(directory) if directory else autosave_dir()
    for name in (SESSION, LABELS, PATCHES):
        (directory / name).unlink(missing_ok=True)


def describe(session: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(session.get("time", 0)))
    what = Path(session["image_path"]).name if session.get("image_path") else "no image"
    return f"Unsaved annotations from {when} ({what}, {session.get('patches', 0)} patches) were found."


def restore(window, session: dict, directory: Path | None = None) -> list[str]:
    """Reopen the image and put the autosaved labels and patches back; returns notes."""
    directory = Path(directory) if directory else autosave_dir()
    notes = []
    image_path = session.get("image_path")
    opened = False
    if image_path == GENERATED_DEMO:
        window.open_demo()
        opened = True
    elif image_path and Path(image_path).exists():
        opened = window.open_path(image_path)
        if opened and session.get("labels_path") and Path(session["labels_path"]).exists():
            window.open_labels(session["labels_path"])
    elif image_path:
        notes.append(f"The image {image_path} is no longer there; its painted labels were not restored.")
    doc = window.document
    if opened and session.get("has_labels") and (directory / LABELS).is_file():
        if doc.image is not None and list(doc.image.shape) == session.get("shape"):
            labels3d = doc.labels3d()
            chunk = int(session.get("chunk", CHUNK))
            with np.load(directory / LABELS) as arrays:
                for key in arrays.files:
                    cz, cy, cx = (int(v) for v in key.split("_"))
                    block = arrays[key]
                    z0, y0, x0 = cz * chunk, cy * chunk, cx * chunk
                    labels3d[z0:z0 + block.shape[0], y0:y0 + block.shape[1], x0:x0 + block.shape[2]] = block
                    doc.edited_chunks.add((cz, cy, cx))
            doc.labelsChanged.emit()
        else:
            notes.append("The image changed shape since the autosave; its labels were not restored.")
    if opened and doc.image is not None:
        if session.get("plane") in doc.available_planes():
            doc.set_plane(session["plane"])
        doc.set_index(int(session.get("index", doc.index)))
    if (directory / PATCHES).is_file():
        window.training_set.from_bytes((directory / PATCHES).read_bytes())
    return notes
