"""Model manager dialog: list, info, import, rename, remove, export for empanada-napari.

It mirrors ``core.registry.ModelRegistry`` and changes it only through the registry's own
methods. Importing verifies the TorchScript file in a worker thread (``backend.torchscript.
verify_model_file``), because a released model file is 100-200 MB. Every action that would ask
the user something (a file, a name, a confirmation) takes that answer as an optional argument,
so that tests drive the dialog without modal windows.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.core.model_export import ExportExistsError, add_to_empanada_napari, export_pair
from empanada_desktop.core.registry import ModelRegistry
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.shell.worker import Job, JobFailed, run_job, spawn

log = logging.getLogger(__name__)

SOURCE_WORDS = {
    "builtin": "built-in",
    "user": "yours",
    "empanada": "from empanada-napari",
    "bundled": "installed with the app",
}


def model_status(model) -> str:
    """One short phrase for the list: where the model comes from and whether it can be used."""
    source = SOURCE_WORDS.get(getattr(model, "source", ""), getattr(model, "source", ""))
    return f"{source}" if model.installed else f"{source}, weights missing"


def fill_model_list(models_list: QListWidget, models, select: str | None, prefer_installed=False) -> None:
    """Show ``models`` in ``models_list`` (name and status) and select ``select``.

    Without a match the first model is selected, or with ``prefer_installed`` the first one that
    has its weights. The caller blocks the list's signals while it refills.
    """
    models_list.clear()
    for model in models:
        item = QListWidgetItem(f"{model.name}  ({model_status(model)})")
        item.setData(Qt.ItemDataRole.UserRole, model.name)
        if not model.installed:
            item.setForeground(Qt.GlobalColor.darkGray)
        models_list.addItem(item)
        if model.name == select:
            models_list.setCurrentItem(item)
    if models_list.currentItem() is None and models_list.count():
        installed = [row for row, model in enumerate(models) if model.installed]
        models_list.setCurrentRow(installed[0] if prefer_installed and installed else 0)


def linkify(html_text: str) -> str:
    """Web addresses in (escaped) text become links a click opens in the browser."""
    import re

    return re.sub(r"(https?://[^\s<]+?)([.,;)]?(?:\s|$))",
                  lambda m: f"<a href='{m.group(1)}'>{m.group(1)}</a>{m.group(2)}", html_text)


def model_info_html(registry, model) -> str:
    """The model's description and facts as simple HTML (shared with the wizard's model page)."""
    from html import escape

    rows: list[tuple[str, str]] = []
    try:
        described = registry.describe(model.name)
    except UserError as error:
        described = {"problem": str(error)}
    for key, value in described.items():
        # Shown elsewhere (title, description, the red hint) or noise for people.
        if key in ("name", "description", "missing_weights", "installed", "builtin") or value is None:
            continue
        if key == "sha256":
            value = str(value)[:16] + "..."
        if key == "size_bytes":
            key, value = "size", f"{int(value) / 1e6:.1f} MB"
        rows.append((key.replace("_", " "), str(value)))
    parts = [f"<h3>{escape(model.name)}</h3>"]
    description = model.config.description or "No description."
    parts.append(f"<p>{escape(description)}</p>")
    if not model.installed:
        parts.append(
            "<p style='color:#b00020'><b>Weights missing.</b> "
            f"{linkify(escape(model.missing_weights_hint or 'Import the model file.'))}</p>"
        )
    parts.append("<table cellspacing='2'>")
    for key, value in rows:
        parts.append(f"<tr><td><i>{escape(key)}</i>&nbsp;</td><td>{escape(value)}</td></tr>")
    parts.append("</table>")
    return "".join(parts)


def import_job(file: Path, name: str, like: str | None, config_file: Path | None):
    """A worker job that verifies and registers a model file; returns the RegisteredModel."""

    def job(stop):
        from empanada_desktop.backend.events import Message
        from empanada_desktop.backend.torchscript import verify_model_file

        yield Message(f"Checking {Path(file).name} and copying it into the app's models ...")
        return ModelRegistry().import_weights(
            Path(file), name, like=like, config_file=config_file, verify=verify_model_file
        )

    return job


class ModelManagerDialog(QDialog):
    """Registered models on the left, the selected model's info and actions on the right."""

    modelsChanged = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(940, 500)
        self.models_list = QListWidget()
        self.models_list.setMinimumWidth(290)
        self.models_list.setMaximumWidth(280)
        self.info = QTextBrowser()
        self.info.setOpenExternalLinks(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.import_button = QPushButton("Import .pth ...")
        self.import_button.setToolTip(
            "Add a TorchScript model file (.pth) made by empanada or by this app; its config comes "
            "from a model it resembles or from a config YAML."
        )
        self.rename_button = QPushButton("Rename ...")
        self.remove_button = QPushButton("Remove")
        self.export_button = QPushButton("Export for empanada-napari ...")
        self.export_button.setToolTip(
            "Write <name>.pth and <name>.yaml into a folder; load the yaml in empanada-napari's "
            "'Register new model' widget."
        )
        self.napari_button = QPushButton("Add to empanada-napari on this computer")
        self.napari_button.setToolTip("Writes ~/.empanada/configs/<name>.yaml pointing at this model.")
        buttons = QVBoxLayout()
        for button in (self.import_button, self.rename_button, self.remove_button,
                       self.export_button, self.napari_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(self.info, 1)
        right.addWidget(self.status)
        body = QHBoxLayout()
        body.addWidget(self.models_list)
        body.addLayout(right, 1)
        body.addLayout(buttons)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(body, 1)
        layout.addWidget(close)

        self.models_list.currentItemChanged.connect(lambda *_: self._show_selected())
        self.import_button.clicked.connect(lambda: self.import_model())
        self.rename_button.clicked.connect(lambda: self.rename_selected())
        self.remove_button.clicked.connect(lambda: self.remove_selected())
        self.export_button.clicked.connect(lambda: self.export_selected())
        self.napari_button.clicked.connect(lambda: self.add_selected_to_napari())
        self.import_task = None
        self.refresh()

    # -- state -------------------------------------------------------------------------------
    def refresh(self, select: str | None = None) -> None:
        select = select or self.selected_name()
        try:
            self.registry = ModelRegistry()
            models = self.registry.list()
        except UserError as error:
            models = []
            self.status.setText(str(error))
        self.models = {model.name: model for model in models}
        with QSignalBlocker(self.models_list):
            fill_model_list(self.models_list, models, select)
        self._show_selected()

    def selected_name(self) -> str | None:
        item = self.models_list.currentItem() if hasattr(self, "models_list") else None
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def selected_model(self):
        name = self.selected_name()
        return self.models.get(name) if name else None

    def _show_selected(self) -> None:
        model = self.selected_model()
        has = model is not None
        user_owned = has and not model.builtin
        self.rename_button.setEnabled(user_owned)
        self.remove_button.setEnabled(user_owned or (has and model.installed))
        self.export_button.setEnabled(has and model.installed)
        self.napari_button.setEnabled(has and model.installed)
        if model is None:
            self.info.setHtml("<p>No model selected. Import a .pth file to add one.</p>")
            return
        self.info.setHtml(model_info_html(self.registry, model))

    # -- actions -----------------------------------------------------------------------------
    def import_model(self, file: str | Path | None = None, name: str | None = None,
                     like: str | None = None, config_file: str | Path | None = None):
        """Import a .pth; without arguments ask for the file, the name and the config source."""
        if file is None:
            file, _ = QFileDialog.getOpenFileName(self, "Import a model file", "",
                                                  "TorchScript models (*.pth *.pt);;All files (*)")
            if not file:
                return None
            file = Path(file)
            if name is None:
                # A file named after a built-in model (MitoNet_v1.pth) fills that model's weights.
                name, ok = QInputDialog.getText(self, "Model name", "Register the model as:",
                                                text=file.stem)
                if not ok or not name.strip():
                    return None
            if like is None and config_file is None:
                like = self._ask_like(name.strip())
        name = (name or Path(file).stem).strip()
        self.import_task = spawn(self._import(Path(file), name, like,
                                              Path(config_file) if config_file else None))
        return self.import_task

    def _ask_like(self, name: str) -> str | None:
        if name in self.models:
            return None
        choices = [n for n, m in self.models.items() if m.builtin] or list(self.models)
        if not choices:
            return None
        like, ok = QInputDialog.getItem(
            self, "Model config", "Which model is this one like (its classes, padding, norms)?",
            choices, 0, False)
        return like if ok else None

    async def _import(self, file: Path, name: str, like: str | None, config_file: Path | None):
        self.import_button.setEnabled(False)
        self.status.setText(f"Importing {file.name} ...")
        try:
            model = await run_job(Job("model-import", import_job(file, name, like, config_file)))
        except (JobFailed, UserError) as error:
            self.status.setText("")
            show_error(self, "Import failed", str(error))
            return None
        finally:
            self.import_button.setEnabled(True)
        self.status.setText(f"Imported {file.name} as {model.name}.")
        self.refresh(select=model.name)
        self.modelsChanged.emit()
        return model

    def rename_selected(self, new_name: str | None = None) -> bool:
        model = self.selected_model()
        if model is None:
            return False
        if new_name is None:
            new_name, ok = QInputDialog.getText(self, "Rename model", f"New name for {model.name}:",
                                                text=model.name)
            if not ok:
                return False
        try:
            self.registry.rename(model.name, new_name.strip())
        except UserError as error:
            show_error(self, "Rename failed", str(error))
            return False
        self.refresh(select=new_name.strip())
        self.modelsChanged.emit()
        return True

    def remove_selected(self, confirm: bool = True) -> bool:
        model = self.selected_model()
        if model is None:
            return False
        if confirm:
            what = "its downloaded weights" if model.builtin else "the model and its weights"
            answer = QMessageBox.question(
                self, "Remove model", f"Remove {model.name}? This deletes {what} from the app's "
                "models folder; exported copies elsewhere are kept.")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            self.registry.remove(model.name)
        except UserError as error:
            show_error(self, "Remove failed", str(error))
            return False
        self.status.setText(f"Removed {model.name}.")
        self.refresh()
        self.modelsChanged.emit()
        return True

    def export_selected(self, out_dir: str | Path | None = None,
                        overwrite: bool | None = None) -> tuple[Path, Path] | None:
        """Write the selected model's .pth and .yaml into ``out_dir`` (asked for if None).

        Files that exist already are replaced if ``overwrite``; None asks the user.
        """
        model = self.selected_model()
        if model is None:
            return None
        if out_dir is None:
            out_dir = QFileDialog.getExistingDirectory(self, f"Export {model.name} to folder")
            if not out_dir:
                return None
        try:
            try:
                paths = export_pair(model, Path(out_dir), overwrite=bool(overwrite))
            except ExportExistsError as exists:
                if overwrite is not None:
                    raise
                if not self._confirm_overwrite(model.name, exists.existing):
                    self.status.setText("Export cancelled; the existing files were kept.")
                    return None
                paths = export_pair(model, Path(out_dir), overwrite=True)
        except (UserError, OSError) as error:
            show_error(self, "Export failed", f"Could not export {model.name} to {out_dir}: {user_message(error, out_dir)}")
            return None
        self.status.setText(f"Wrote {paths[0].name} and {paths[1].name} to {out_dir}. In "
                            "empanada-napari, load the .yaml with 'Register new model'.")
        return paths

    def _confirm_overwrite(self, name: str, existing: list[Path]) -> bool:
        files = "\n".join(str(path) for path in existing)
        answer = QMessageBox.question(
            self, "Replace files?", f"These files exist already:\n{files}\n\nReplace them with "
            f"{name}?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def add_selected_to_napari(self) -> Path | None:
        model = self.selected_model()
        if model is None:
            return None
        try:
            target = add_to_empanada_napari(model)
        except (UserError, OSError) as error:
            show_error(self, "Could not add the model to empanada-napari", user_message(error))
            return None
        self.status.setText(f"Wrote {target}; restart napari to see {model.name} in its model lists.")
        return target


register_screen("model_manager", lambda: (ModelManagerDialog(), (860, 480)))


def main() -> int:  # pragma: no cover - manual use: python -m empanada_desktop.ui.models.model_manager
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    dialog = ModelManagerDialog()
    dialog.show()
    return app.exec()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
