"""Contrast controls beside the histogram: minimum and maximum boxes, Auto and Reset.

The histogram's handles stay; these give exact numbers, a one-click stretch (Auto: the 0.5 /
99.5 percentiles of the slice on screen) and a way back to how the image opened (Reset).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.viewer.viewer import Viewer, auto_levels, default_levels


class ContrastControls(QWidget):
    def __init__(self, viewer: Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.min_spin, self.max_spin = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, what in ((self.min_spin, "black"), (self.max_spin, "white")):
            spin.setRange(-1e9, 1e9)
            spin.setDecimals(1)
            spin.setKeyboardTracking(False)
            spin.setToolTip(f"Values at or {'below' if what == 'black' else 'above'} this are shown {what}")
            spin.valueChanged.connect(lambda *_: self._typed())
        self.auto_button = QPushButton("Auto")
        self.auto_button.setToolTip("Stretch the contrast to the slice on screen (0.5 / 99.5 percentiles)")
        self.auto_button.clicked.connect(self.auto)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the contrast the image opened with")
        self.reset_button.clicked.connect(self.reset)
        form = QFormLayout()
        form.addRow("Minimum", self.min_spin)
        form.addRow("Maximum", self.max_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.auto_button)
        buttons.addWidget(self.reset_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addStretch(1)
        viewer.levelsChanged.connect(self._show)
        if viewer.levels() is not None:
            self._show(*viewer.levels())

    def _show(self, low: float, high: float) -> None:
        for spin, value in ((self.min_spin, low), (self.max_spin, high)):
            was = spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(was)

    def _typed(self) -> None:
        low, high = self.min_spin.value(), self.max_spin.value()
        if high > low and self.viewer.current_slice() is not None:
            self.viewer.set_levels(low, high)

    def auto(self) -> None:
        image = self.viewer.current_slice()
        if image is not None:
            self.viewer.set_levels(*auto_levels(np.asarray(image)))

    def reset(self) -> None:
        image = self.viewer.current_slice()
        if image is not None:
            self.viewer.set_levels(*default_levels(np.asarray(image)))


def _contrast_screen():
    from empanada_desktop.ui.viewer.document import demo_document

    viewer = Viewer(demo_document())
    controls = ContrastControls(viewer)
    controls._keep = viewer
    return controls, (260, 160)


register_screen("contrast", _contrast_screen)
