"""Training health on the wizard's live page: a one-line verdict that is always visible, and,
collapsed by default, two curves fed by ``Health`` events (``backend/finetune/health.py``):
how far each encoder stage's output scale is from its start, and the gradient norm of the heads
and of the encoder. When the model drifts or blows up the line says so in plain words.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from empanada_desktop.backend.events import Health

_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_STATUS = {
    "ok": ("#2e7d32", "Training health: fine (the encoder's output scale and the gradients are steady)."),
    "drifting": ("#b26a00", "Training health: drifting - "),
    "blow-up": ("#b00020", "Training health: blow-up - "),
}
_PLAIN = {
    "drifting": " Training goes on; it stops by itself and rolls back if this becomes a blow-up.",
    "blow-up": " The run was stopped and rolled back; see the message below for what to try.",
}


class HealthPanel(QWidget):
    """The verdict line with a Show/Hide toggle over the two health plots."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText("Show health plots")
        self.toggle.setCheckable(True)
        self.toggle.setChecked(False)
        self.verdict = QLabel("Training health: checked at every iteration once training starts.")
        self.verdict.setWordWrap(True)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.graphics.setFixedHeight(230)  # the loss plot above keeps the stretch
        self.scale_plot = self.graphics.addPlot(row=0, col=0, title="Encoder output scale (x its start)")
        self.grad_plot = self.graphics.addPlot(row=0, col=1, title="Gradient norm")
        for plot in (self.scale_plot, self.grad_plot):
            plot.setLogMode(y=True)
            plot.showGrid(x=True, y=True, alpha=0.2)
            plot.setLabel("bottom", "iteration")
            plot.addLegend(offset=(-10, 10))
            plot.legend.setLabelTextColor("#222222")
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen("#444444")
                plot.getAxis(axis).setTextPen("#222222")
            plot.setTitle(plot.titleLabel.text, color="#222222")
        # The 10x band: within it the encoder is considered steady.
        for level in (10.0, 0.1):
            self.scale_plot.addItem(pg.InfiniteLine(pos=np.log10(level), angle=0,
                                                    pen=pg.mkPen("#b26a00", style=pg.QtCore.Qt.PenStyle.DashLine)))
        self.graphics.hide()
        header = QHBoxLayout()
        header.addWidget(self.verdict, 1)
        header.addWidget(self.toggle)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.graphics)
        self.toggle.toggled.connect(self.set_expanded)
        self.status = "ok"
        self.series: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
        self.curves: dict[tuple[str, str], pg.PlotDataItem] = {}

    def set_expanded(self, expanded: bool) -> None:
        self.graphics.setVisible(expanded)
        self.toggle.setText("Hide health plots" if expanded else "Show health plots")
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)

    def clear(self) -> None:
        for (kind, _), curve in self.curves.items():
            (self.scale_plot if kind == "scale" else self.grad_plot).removeItem(curve)
        for plot in (self.scale_plot, self.grad_plot):
            plot.legend.clear()
        self.series.clear()
        self.curves.clear()
        self.status = "ok"
        self.verdict.setText("Training health: checked at every iteration once training starts.")
        self.verdict.setStyleSheet("")

    def add(self, event: Health) -> None:
        for stage, value in event.encoder_scales.items():
            start = event.start_scales.get(stage)
            if start and value > 0:
                self._append("scale", stage, event.step, value / start)
        for part, value in event.grad_norms.items():
            if value > 0:
                self._append("grad", part, event.step, value)
        self._show_status(event)

    def _append(self, kind: str, name: str, step: int, value: float) -> None:
        key = (kind, name)
        xs, ys = self.series.setdefault(key, ([], []))
        if xs and step <= xs[-1]:  # a resumed run repeats steps: start its curve again from there
            while xs and xs[-1] >= step:
                xs.pop()
                ys.pop()
        xs.append(float(step))
        ys.append(float(value) if np.isfinite(value) else np.nan)
        if key not in self.curves:
            plot = self.scale_plot if kind == "scale" else self.grad_plot
            colour = _COLOURS[sum(1 for k in self.curves if k[0] == kind) % len(_COLOURS)]
            self.curves[key] = plot.plot(pen=pg.mkPen(colour, width=2), name=name)
        self.curves[key].setData(np.asarray(xs), np.asarray(ys), connect="finite")

    def _show_status(self, event: Health) -> None:
        # Keep the worst verdict seen: a drift warning should not vanish on the next calm step.
        order = ("ok", "drifting", "blow-up")
        if order.index(event.status) < order.index(self.status):
            return
        self.status = event.status
        colour, prefix = _STATUS[event.status]
        text = prefix if event.status == "ok" else prefix + event.text + _PLAIN[event.status]
        self.verdict.setText(text)
        self.verdict.setStyleSheet(f"color: {colour};" + ("" if event.status == "ok" else " font-weight: bold;"))
