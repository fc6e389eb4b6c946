"""Small form widgets of the inference panel: spin boxes in one call, a lazily filled combo box."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox


def spin_box(low, high, value, step=1, decimals=None) -> QSpinBox | QDoubleSpinBox:
    """A spin box from ``low`` to ``high`` showing ``value``; with ``decimals`` a QDoubleSpinBox."""
    spin = QDoubleSpinBox() if decimals is not None else QSpinBox()
    if decimals is not None:
        spin.setDecimals(decimals)
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setValue(value)
    return spin


class LazyComboBox(QComboBox):
    """A combo box that calls ``before_popup`` before it shows its list (to fill it late)."""

    def __init__(self, before_popup: Callable[[], None]):
        super().__init__()
        self._before_popup = before_popup

    def showPopup(self) -> None:  # noqa: N802 - Qt override
        self._before_popup()
        super().showPopup()
