"""Where to save the training set: a folder path that may not exist yet.

A plain folder dialog cannot name a folder that does not exist ("Directory not found") and
Enter in it accepts the folder it shows, the parent. Here the path is typed or browsed to, is
created when saving, and an existing set there is appended to.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QVBoxLayout, QWidget)


def default_set_folder(last: Path | None, image_name: str | None) -> Path:
    """The folder offered first: the set saved last, else ``~/empanada_training/<image>``."""
    if last is not None:
        return Path(last)
    stem = Path(image_name).stem if image_name else "training_set"
    return Path.home() / "empanada_training" / (stem or "training_set")


class SaveSetDialog(QDialog):
    """Asks for the training set's folder; ``folder()`` is the answer once accepted."""

    def __init__(self, start: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Save training set")
        self.setObjectName("save_set_dialog")
        self.path_edit = QLineEdit(str(start))
        self.path_edit.setMinimumWidth(420)
        browse = QPushButton("Browse ...")
        browse.setToolTip("Choose the parent folder; the set's folder name is kept")
        browse.clicked.connect(self._browse)
        self.note = QLabel()
        self.note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.save_button = buttons.button(QDialogButtonBox.StandardButton.Save)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Folder of the training set (empanada's layout; created if needed):"))
        layout.addLayout(row)
        layout.addWidget(self.note)
        layout.addWidget(buttons)
        self.path_edit.textChanged.connect(lambda *_: self._update_note())
        self._update_note()

    def folder(self) -> Path | None:
        text = self.path_edit.text().strip()
        return Path(text).expanduser() if text else None

    def _browse(self) -> None:
        current = self.folder()
        parent = current.parent if current is not None else Path.home()
        start = parent if parent.is_dir() else Path.home()
        chosen = QFileDialog.getExistingDirectory(self, "Folder to save the training set in", str(start))
        if chosen:
            name = current.name if current is not None and current.name else "training_set"
            self.path_edit.setText(str(Path(chosen) / name))

    def _update_note(self) -> None:
        folder = self.folder()
        if folder is None:
            self.note.setText("Type a folder path.")
        elif folder.exists() and not folder.is_dir():
            self.note.setText(f"{folder} is a file; choose a folder.")
        elif folder.is_dir() and any(folder.iterdir()):
            self.note.setText("This folder exists: the annotated patches are added to the set in it.")
        elif folder.is_dir():
            self.note.setText("This empty folder will hold the set.")
        else:
            self.note.setText("This folder will be created.")
        self.save_button.setEnabled(folder is not None and not (folder.exists() and not folder.is_dir()))
