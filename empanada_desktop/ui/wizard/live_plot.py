"""Live training curves: each loss term and the total over steps, and the learning rate.

Fed ``Progress`` events (already throttled by the worker); appending a point is O(1) amortised
and the curves redraw with ``setData`` on plain numpy arrays, which pyqtgraph handles fast enough
for thousands of points.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from empanada_desktop.backend.events import Progress

# The loss terms in words (backend/finetune/losses.py names them ce, mse, l1, pointrend_ce).
LOSS_NAMES = {
    "total": "total",
    "loss": "total",
    "ce": "organelle vs background",
    "mse": "object centres",
    "l1": "pixel-to-centre offsets",
    "pointrend_ce": "boundary detail",
}
HEALTHY = ("A healthy run: the total loss (thick line) falls fast at first, then slowly, with some "
           "wobble from batch to batch; the learning rate rises over the first 30% of iterations "
           "and then falls. A loss that keeps climbing, or jumps far above where it started, "
           "points at masks that do not match their images or too few patches.")

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


class LivePlot(QWidget):
    """Loss curves (log scale) above a learning-rate curve, sharing the step axis."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        # A light plot whatever the theme's pyqtgraph colours, so the curves and labels read well.
        self.graphics.setBackground("w")
        self.loss_plot = self.graphics.addPlot(row=0, col=0, title="Loss")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_plot.addLegend(offset=(-10, 10))
        self.loss_plot.setLabel("left", "loss")
        self.lr_plot = self.graphics.addPlot(row=1, col=0, title="Learning rate")
        self.lr_plot.setXLink(self.loss_plot)
        self.lr_plot.setLabel("bottom", "iteration")
        self.lr_plot.showGrid(x=True, y=True, alpha=0.2)
        self.graphics.ci.layout.setRowStretchFactor(0, 3)
        self.graphics.ci.layout.setRowStretchFactor(1, 1)
        for plot in (self.loss_plot, self.lr_plot):
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen("#444444")
                plot.getAxis(axis).setTextPen("#222222")
            plot.setTitle(plot.titleLabel.text, color="#222222")
        self.loss_plot.legend.setLabelTextColor("#222222")
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen("#555555", width=2))
        self.steps: list[int] = []
        self.losses: dict[str, list[float]] = {}
        self.lrs: list[float] = []
        self.lr_steps: list[int] = []
        self.curves: dict[str, pg.PlotDataItem] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        self.healthy_note = QLabel(HEALTHY)
        self.healthy_note.setWordWrap(True)
        layout.addWidget(self.healthy_note)

    def clear(self) -> None:
        self.steps.clear()
        self.losses.clear()
        self.lrs.clear()
        self.lr_steps.clear()
        for curve in self.curves.values():
            self.loss_plot.removeItem(curve)
        self.curves.clear()
        if self.loss_plot.legend is not None:
            self.loss_plot.legend.clear()
        self.lr_curve.setData([], [])

    def add(self, progress: Progress) -> None:
        """Append one step. A step not after the last (a run resumed from an earlier checkpoint
        than its last logged step) drops the points from that step on, then continues."""
        if self.steps and progress.step <= self.steps[-1]:
            self._truncate(progress.step)
        if not progress.losses and progress.lr is None:
            return
        self.steps.append(progress.step)
        for name in progress.losses:
            if name not in self.losses:
                # A term that appears late starts with gaps so that lengths match.
                self.losses[name] = [np.nan] * (len(self.steps) - 1)
                colour = _COLOURS[len(self.curves) % len(_COLOURS)]
                width = 3 if name in ("total", "loss") else 1.5
                self.curves[name] = self.loss_plot.plot(pen=pg.mkPen(colour, width=width),
                                                        name=LOSS_NAMES.get(name, name))
        for name, values in self.losses.items():
            value = progress.losses.get(name, np.nan)
            values.append(float(value) if value is not None and value > 0 else np.nan)
        if progress.lr is not None:
            self.lr_steps.append(progress.step)
            self.lrs.append(float(progress.lr))
        self._redraw()

    def _truncate(self, step: int) -> None:
        keep = int(np.searchsorted(np.asarray(self.steps), step))
        del self.steps[keep:]
        for values in self.losses.values():
            del values[keep:]
        keep_lr = int(np.searchsorted(np.asarray(self.lr_steps), step))
        del self.lr_steps[keep_lr:]
        del self.lrs[keep_lr:]

    def _redraw(self) -> None:
        x = np.asarray(self.steps, dtype=float)
        for name, values in self.losses.items():
            self.curves[name].setData(x, np.asarray(values, dtype=float), connect="finite")
        self.lr_curve.setData(np.asarray(self.lr_steps, dtype=float), np.asarray(self.lrs, dtype=float))
