"""The main window: assembles the viewer and the panels; holds no logic of its own.

Extension points for panels and menus: ``add_panel(name, widget, area)``,
``add_menu_action(menu_title, action)``, ``training_set_dir()`` and the ``document`` attribute.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDialog, QDockWidget, QFileDialog, QMainWindow, QMenu, QMessageBox,
                               QWidget)

from empanada_desktop import __version__
from empanada_desktop.core import opening
from empanada_desktop.core.errors import UserError, user_message
from empanada_desktop.core.volumes import split_dataset
from empanada_desktop.ui.shell.messages import show_error
from empanada_desktop.ui.shell.busy_indicator import BusyIndicator
from empanada_desktop.ui.shell.layout import fit_to_screen, scrollable
from empanada_desktop.ui.shell.models_menu import add_model_features
from empanada_desktop.ui.shell.open_dialog import (OPEN_FILTER, ask_dataset, open_into_document,
                                                  open_labels_source)
from empanada_desktop.ui.shell.quit_guard import confirm_and_stop_jobs
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.shell.settings import app_settings
from empanada_desktop.ui.shell.theme import apply_theme, current_theme
from empanada_desktop.ui.training_data.autosave import Autosaver
from empanada_desktop.ui.training_data.patch_picker import PatchPicker
from empanada_desktop.ui.training_data.training_gallery import TrainingSetPanel
from empanada_desktop.ui.training_data.training_set import TrainingSet
from empanada_desktop.ui.viewer.annotation import AnnotationController
from empanada_desktop.ui.viewer.annotation_panel import AnnotationPanel
from empanada_desktop.ui.viewer.contrast import ContrastControls
from empanada_desktop.ui.viewer.document import Document
from empanada_desktop.ui.viewer.labels_layer import LabelsControls
from empanada_desktop.ui.viewer.viewer import Viewer
from empanada_desktop.ui.viewer.voxel_size import VoxelSizeButton

log = logging.getLogger(__name__)
MAX_RECENT = 10
AREAS = {
    "left": Qt.DockWidgetArea.LeftDockWidgetArea,
    "right": Qt.DockWidgetArea.RightDockWidgetArea,
    "bottom": Qt.DockWidgetArea.BottomDockWidgetArea,
    "top": Qt.DockWidgetArea.TopDockWidgetArea,
}


class MainWindow(QMainWindow):
    """The application window."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("empanada-desktop")
        self.setAcceptDrops(True)
        self.settings = app_settings()
        self.document = Document(self)
        self.viewer = Viewer(self.document)
        self.setCentralWidget(self.viewer)
        self.docks: dict[str, QDockWidget] = {}
        self._menus: dict[str, QMenu] = {}
        self._training_set_dir: Path | None = None

        self._build_file_menu()
        self._menu("&Edit")
        self._view_menu = self._menu("&View")
        self.toolbar = self.addToolBar("Main")
        self.toolbar.setObjectName("main_toolbar")
        for action in (self.open_action, self.demo_action):
            self.toolbar.addAction(action)
        self.add_panel("Labels", LabelsControls(self.viewer.labels_layer), "left")
        self.add_panel("Contrast", ContrastControls(self.viewer), "left")
        self._build_panels()
        add_model_features(self)
        self._build_view_menu()
        help_menu = self._menu("&Help")
        about = QAction("About empanada-desktop", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

        self.viewer.readoutChanged.connect(lambda text: self.statusBar().showMessage(text))
        self.document.imageChanged.connect(self._update_title)
        self.document.readFailed.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.statusBar().showMessage("Open an image (Ctrl+O), a folder of 2D images, or the demo.")
        self.voxel_size = VoxelSizeButton(self.document, self.viewer, self.settings, self)
        self.statusBar().addPermanentWidget(self.voxel_size)
        self.busy = BusyIndicator(self)
        self.statusBar().addPermanentWidget(self.busy)
        self._restore_geometry()
        self._reopen_training_set()

    def _build_panels(self) -> None:
        """The annotation and training-data panels; others are added through add_panel."""
        self.annotation = AnnotationController(self.document, self.viewer, self)
        self.annotation_panel = AnnotationPanel(self.annotation)
        self.add_panel("Annotation", self.annotation_panel, "left")
        edit = self._menu("&Edit")
        edit.addAction(self.annotation_panel.undo_action)
        edit.addAction(self.annotation_panel.redo_action)
        self.annotation.message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.training_set = TrainingSet(self)
        self.patch_picker = PatchPicker(self.document, self.viewer, self.training_set)
        self.add_panel("Patches", self.patch_picker, "right")
        self.training_panel = TrainingSetPanel(self.training_set)
        self.add_panel("Training set", self.training_panel, "right")
        self.training_panel.savedTo.connect(self.set_training_set_dir)
        self.autosaver = Autosaver(self.document, self.training_set, parent=self)
        self.annotation.strokeFinished.connect(self.autosaver.stroke_finished)
        self.training_panel.patchEdited.connect(self.autosaver.stroke_finished)

    def set_prediction_provider(self, provider) -> None:
        """``provider(image2d_uint8) -> labels2d``: pre-fills picked patches with a model."""
        self.patch_picker.set_prediction_provider(provider)

    # -- extension points ------------------------------------------------------------------
    def add_panel(self, name: str, widget: QWidget, area: str | Qt.DockWidgetArea = "right",
                  ) -> QDockWidget:
        """Add ``widget`` as a dockable panel titled ``name`` ("left", "right", "bottom", "top")."""
        qt_area = AREAS[area] if isinstance(area, str) else area
        dock = QDockWidget(name, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(scrollable(widget))
        self.addDockWidget(qt_area, dock)
        same_side = [d for d in self.docks.values() if self.dockWidgetArea(d) == qt_area]
        if same_side and qt_area in (AREAS["left"], AREAS["right"]) and len(same_side) >= 2:
            self.tabifyDockWidget(same_side[-1], dock)
        self.docks[name] = dock
        if hasattr(self, "_panels_menu"):
            self._panels_menu.addAction(dock.toggleViewAction())
        return dock

    def add_menu_action(self, menu_title: str, action: QAction) -> None:
        """Add ``action`` to the menu ``menu_title`` (created before Help if new)."""
        if action.parent() is None:
            action.setParent(self)  # keeps it alive as long as the window
        self._menu(menu_title).addAction(action)

    def training_set_dir(self) -> Path | None:
        """The training set last saved or opened in this window, or None."""
        return self._training_set_dir

    def set_training_set_dir(self, path: Path | None) -> None:
        self._training_set_dir = Path(path) if path else None
        self.settings.setValue("training_set_dir", str(path) if path else "")

    def _reopen_training_set(self) -> None:
        """The set saved or opened last time comes back in the Training set panel."""
        saved = str(self.settings.value("training_set_dir", "") or "")
        if not saved or not Path(saved).is_dir() or self.training_set.patches:
            return
        self._training_set_dir = Path(saved)
        try:
            self.training_set.load(saved)
        except UserError as error:
            log.info("the last training set %s was not reopened: %s", saved, error)
            return
        self.statusBar().showMessage(f"Reopened the training set {saved}.", 8000)

    def _menu(self, title: str) -> QMenu:
        key = title.replace("&", "")
        if key not in self._menus:
            menu = QMenu(title, self)
            help_menu = self._menus.get("Help")
            if help_menu is not None:
                self.menuBar().insertMenu(help_menu.menuAction(), menu)
            else:
                self.menuBar().addMenu(menu)
            self._menus[key] = menu
        return self._menus[key]

    # -- menus -----------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        shown = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
        action.setToolTip(f"{tip or text.replace('&', '').rstrip('.')}" + (f" ({shown})" if shown else ""))
        action.triggered.connect(slot)
        return action

    def _build_file_menu(self) -> None:
        menu = self._menu("&File")
        self.open_action = self._action("&Open image...", self.choose_image, QKeySequence.StandardKey.Open)
        self.open_folder_action = self._action("Open folder as 2D stack...", self.choose_folder)
        self.open_volume_folder_action = self._action(
            "Open folder as &volume...", lambda: self.choose_folder("volume"),
            tip="Open a .zarr / .n5 folder or a folder of TIFF slices as one volume")
        self.open_labels_action = self._action("Open &labels...", self.choose_labels, "Ctrl+L")
        self.open_labels_folder_action = self._action(
            "Open labels folder...", lambda: self.choose_labels(folder=True),
            tip="Open OME-Zarr labels (e.g. cell.zarr/labels/mito), a Zarr or an N5 folder as labels")
        self.save_labels_action = self._action("&Save labels as...", self.choose_save_labels, "Ctrl+S")
        self.demo_action = self._action("Open &demo", self.open_demo, tip="Open the demo EM volume")
        self.recent_menu = QMenu("Open &recent", self)
        quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        for item in (self.open_action, self.open_volume_folder_action, self.open_folder_action,
                     self.recent_menu, self.demo_action,
                     None, self.open_labels_action, self.open_labels_folder_action, self.save_labels_action, None,
                     quit_action):
            if item is None:
                menu.addSeparator()
            elif isinstance(item, QMenu):
                menu.addMenu(item)
            else:
                menu.addAction(item)
        self._rebuild_recent()

    def _build_view_menu(self) -> None:
        menu = self._view_menu
        self._panels_menu = menu.addMenu("Panels")
        for dock in self.docks.values():
            self._panels_menu.addAction(dock.toggleViewAction())
        self.dark_action = self._action("&Dark theme", self._toggle_theme, "Ctrl+Shift+D")
        self.dark_action.setCheckable(True)
        self.dark_action.setChecked(current_theme() == "dark")
        menu.addAction(self.dark_action)
        reset = self._action("Reset zoom", lambda: self.viewer.view_box.autoRange(padding=0.02), "Ctrl+0")
        menu.addAction(reset)

    def _toggle_theme(self, dark: bool) -> None:
        theme = apply_theme("dark" if dark else "light")
        self.settings.setValue("theme", theme)
        self.viewer.graphics.setBackground("#141416" if theme == "dark" else "#202020")

    def _about(self) -> None:
        QMessageBox.about(self, "About empanada-desktop",
                          f"empanada-desktop {__version__}\nFinetune empanada models on your EM images.")

    # -- opening ---------------------------------------------------------------------------
    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self._last_dir(), OPEN_FILTER)
        if path:
            self.open_path(path)

    def choose_folder(self, kind: str = "stack") -> None:
        title = "Open folder as volume" if kind == "volume" else "Open folder of 2D images"
        path = QFileDialog.getExistingDirectory(self, title, self._last_dir())
        if path:
            self.open_path(path, folder_as=kind)

    def choose_labels(self, folder: bool = False) -> None:
        """Ask for a labels file (or, with ``folder``, an OME-Zarr / Zarr / N5 folder) and open it."""
        if self.document.image is None:
            show_error(self, "Cannot do that", "Open an image first, then open its labels onto it.")
            return
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Open labels folder (OME-Zarr, Zarr, N5)", self._last_dir())
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Open labels", self._last_dir(), OPEN_FILTER)
        if path:
            self.open_labels(path)

    def choose_save_labels(self) -> None:
        if not self.document.has_labels():
            show_error(self, "Cannot do that",
                       "There are no labels to save yet; paint or open some first.")
            return
        default = str(Path(self._last_dir()) / f"{Path(self.document.display_name).stem}_labels.tif")
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", default, "TIFF (*.tif *.tiff)")
        if path:
            self.save_labels(path)

    def open_path(self, path: str | Path, *, dataset: str | None = None, folder_as: str | None = None,
                  **answers) -> bool:
        """Open any image or volume (``file.h5:/raw`` too), or a folder as a volume or 2D stack
        (``open_dialog``); problems show a message box."""
        opened = open_into_document(self.document, path, lambda title, text: show_error(self, title, text),
                                    parent=self, dataset=dataset, folder_as=folder_as, **answers)
        if opened is not None:
            self._add_recent(Path(opened), self.document.path)
            shape = " × ".join(str(n) for n in self.document.image.shape)
            self.statusBar().showMessage(f"Opened {Path(opened).name} ({shape}).", 8000)
        return opened is not None

    def open_labels(self, path: str | Path, choose_dataset=None) -> bool:
        """Labels of the open image from a file, ``file.h5:/labels`` or an OME-Zarr labels folder
        (a file with several images asks which one: ``choose_dataset`` answers in tests)."""
        try:
            labels = open_labels_source(path, choose_dataset or (lambda p, infos: ask_dataset(self, p, infos)))
            if labels is None:
                return False
            self.document.set_labels(labels, split_dataset(path)[0])  # a lazy source is shown as it is
        except (UserError, OSError) as error:
            show_error(self, "Cannot open labels", user_message(error, path))
            return False
        return True

    def save_labels(self, path: str | Path) -> bool:
        from empanada_desktop.core.imageio import write_tiff

        try:
            write_tiff(path, self.document.labels_array())
        except (UserError, OSError) as error:
            show_error(self, "Cannot save labels", user_message(error, path))
            return False
        self.document.labels_path = Path(path)
        self.document.edited_chunks = set()  # saved: nothing left for autosave to keep
        self.statusBar().showMessage(f"Saved labels to {path}", 5000)
        return True

    def open_demo(self) -> None:
        image, path = opening.demo_image()
        self.document.set_image(image, path or Path("demo (generated)"))

    def _last_dir(self) -> str:
        return str(self.settings.value("last_dir", str(Path.home())))

    def _add_recent(self, path: Path, file: Path | None = None) -> None:
        path = path.resolve()
        self.settings.setValue("last_dir", str((file or path).resolve().parent))
        recent = [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("recent_files", [str(path), *recent][:MAX_RECENT])
        self._rebuild_recent()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.document.display_name} - empanada-desktop")

    # -- drag and drop, geometry -----------------------------------------------------------
    def dragEnterEvent(self, event):  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event):  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.open_path(urls[0])
            event.acceptProposedAction()

    def _restore_geometry(self) -> None:
        geometry = self.settings.value("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(fit_to_screen(self, 1280, 820))
        state = self.settings.value("window_state")
        if state is not None:
            self.restoreState(state)

    def closeEvent(self, event):  # noqa: N802
        if not confirm_and_stop_jobs(self):
            event.ignore()
            return
        for dialog in self.findChildren(QDialog):  # the wizard, the model manager: they go too
            dialog.close()
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("window_state", self.saveState())
        self.settings.sync()
        if self.has_unsaved_work():
            self.autosaver.dirty = True
            self.autosaver.save_if_dirty()  # offered back on the next launch
        else:
            self.autosaver.discard()
        super().closeEvent(event)

    def has_unsaved_work(self) -> bool:
        return bool(self.document.edited_chunks) or self.training_set.unsaved


def _demo_window() -> MainWindow:
    window = MainWindow()
    window.open_demo()
    if window.document.image is not None and window.document.path == Path("demo (generated)"):
        window.document.set_labels(opening.synthetic_em()[1])
    return window


register_screen("main_window", _demo_window)
