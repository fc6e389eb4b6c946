"""The annotation tool panel: tool buttons, brush size, label, proofreading, undo/redo.

Every button's tooltip names its keyboard shortcut. Shortcuts work anywhere in the window that
holds the panel (the main window, or a focused patch view).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel,
                               QMessageBox, QSpinBox, QToolButton, QVBoxLayout,
                               QWidget)

from empanada_desktop.core.errors import UserError
from empanada_desktop.ui.viewer.annotation import AnnotationController
from empanada_desktop.ui.viewer.labels_layer import label_colour

TOOL_INFO = {  # tool: (text, shortcut, what it does)
    "pan": ("Pan", "Esc", "Pan and zoom (drag, mouse wheel); no painting"),
    "brush": ("Brush", "B", "Paint the current label"),
    "eraser": ("Eraser", "E", "Erase to background"),
    "fill": ("Fill", "F", "Fill the connected region under the click with the current label"),
    "picker": ("Pick", "P", "Pick the label under the click; Ctrl+click adds it to the selection"),
    "split": ("Split", "S", "Click markers inside one object, then Split (Enter)"),
}


def with_shortcut(text: str, shortcut: str | QKeySequence) -> str:
    key = QKeySequence(shortcut).toString(QKeySequence.SequenceFormat.NativeText)
    return f"{text} ({key})" if key else text


class AnnotationPanel(QWidget):
    """Buttons and fields mirroring an AnnotationController."""

    def __init__(self, controller: AnnotationController, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        tools = QGridLayout()
        for i, (tool, (text, key, tip)) in enumerate(TOOL_INFO.items()):
            action = self._action(text, key, tip, lambda _=False, t=tool: self._choose_tool(t))
            action.setCheckable(True)
            group.addAction(action)
            self.tool_actions[tool] = action
            button = QToolButton()
            button.setDefaultAction(action)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            button.setMinimumWidth(64)
            tools.addWidget(button, i // 3, i % 3)

        self.size_spin = QSpinBox()
        self.size_spin.setRange(1, 255)
        self.size_spin.setSuffix(" px")
        self.size_spin.setToolTip("Brush and eraser diameter ([ smaller, ] bigger)")
        self.size_spin.valueChanged.connect(controller.set_brush_size)
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, 2**31 - 1)
        self.label_spin.setToolTip("Label painted by the brush and fill")
        self.label_spin.valueChanged.connect(controller.set_label)
        self.swatch = QLabel()
        self.swatch.setFixedSize(22, 22)
        new_label = self._action("New label", "N", "Switch to a label no object uses yet",
                                 lambda: controller.next_free_label())
        smaller = self._action("Smaller brush", "[", "", lambda: self.size_spin.stepBy(-2))
        bigger = self._action("Bigger brush", "]", "", lambda: self.size_spin.stepBy(2))
        self.addActions([smaller, bigger])
        label_row = QHBoxLayout()
        label_row.addWidget(self.swatch)
        label_row.addWidget(self.label_spin, 1)
        label_row.addWidget(self._button(new_label))
        form = QFormLayout()
        form.addRow("Brush size", self.size_spin)
        form.addRow("Label", label_row)

        self.selection_label = QLabel("Selected: none")
        self.merge_action = self._action("Merge selected", "M", "Merge the selected labels into one",
                                         lambda: self._guard(controller.merge_selected))
        self.delete_action = self._action("Delete label", "Delete", "Delete the picked label everywhere",
                                          lambda: self._guard(controller.delete_label))
        self.split_action = self._action("Split", "Return", "Split the object between the markers",
                                         lambda: self._guard(controller.split))
        clear = self._action("Clear markers", "", "Remove the split markers", controller.clear_markers)
        proof = QGroupBox("Proofreading")
        proof_layout = QGridLayout(proof)
        proof_layout.addWidget(self.selection_label, 0, 0, 1, 2)
        for i, action in enumerate((self.merge_action, self.delete_action, self.split_action, clear)):
            proof_layout.addWidget(self._button(action), 1 + i // 2, i % 2)

        self.undo_action = self._action("Undo", QKeySequence.StandardKey.Undo, "Undo the last edit",
                                        controller.undo)
        self.redo_action = self._action("Redo", QKeySequence.StandardKey.Redo, "Redo the edit undone",
                                        controller.redo)
        history = QHBoxLayout()
        history.addWidget(self._button(self.undo_action))
        history.addWidget(self._button(self.redo_action))

        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(tools)
        layout.addLayout(form)
        layout.addWidget(proof)
        layout.addLayout(history)
        layout.addWidget(self.status)
        layout.addStretch(1)
        controller.changed.connect(self.sync)
        controller.message.connect(self.status.setText)
        self.sync()

    def _action(self, text, shortcut, tip, slot) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(with_shortcut(tip or text, shortcut) if shortcut else (tip or text))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    @staticmethod
    def _button(action: QAction) -> QToolButton:
        button = QToolButton()
        button.setDefaultAction(action)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        return button

    def _choose_tool(self, tool: str) -> None:
        self.controller.set_tool(tool)
        self.status.setText(TOOL_INFO[tool][2])

    def _guard(self, operation) -> None:
        try:
            operation()
        except UserError as error:
            QMessageBox.information(self, "Proofreading", str(error))

    def sync(self) -> None:
        """Mirror the controller's state (signals blocked so nothing loops back)."""
        c = self.controller
        self.tool_actions[c.tool].setChecked(True)
        for widget, value in ((self.size_spin, c.brush_size), (self.label_spin, c.label)):
            was = widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(was)
        r, g, b = label_colour(c.label)
        self.swatch.setStyleSheet(f"background: rgb({r},{g},{b}); border: 1px solid #555;")
        chosen = ", ".join(str(v) for v in sorted(c.selected)) or "none"
        self.selection_label.setText(f"Selected: {chosen}   Markers: {len(c.markers)}")
        self.merge_action.setEnabled(len(c.selected) >= 2)
        self.split_action.setEnabled(len(c.markers) >= 2)
        self.undo_action.setEnabled(c.undo_stack.can_undo())
        self.redo_action.setEnabled(c.undo_stack.can_redo())


def _demo():
    from empanada_desktop.core.opening import synthetic_em
    from empanada_desktop.ui.viewer.document import demo_document
    from empanada_desktop.ui.viewer.viewer import Viewer

    document = demo_document()
    if document.path is None:
        document.set_labels(synthetic_em()[1])
    viewer = Viewer(document)
    controller = AnnotationController(document, viewer)
    panel = AnnotationPanel(controller)
    container = QWidget()
    layout = QHBoxLayout(container)
    layout.addWidget(panel)
    layout.addWidget(viewer, 1)
    container._keep = (controller,)  # the controller lives as long as the window
    return container


if __name__ == "__main__":
    from PySide6.QtWidgets import QApplication

    from empanada_desktop.ui.shell.theme import configure_pyqtgraph

    app = QApplication([])
    configure_pyqtgraph()
    window = _demo()
    window.resize(1100, 750)
    window.show()
    app.exec()
