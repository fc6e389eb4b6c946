"""Drives the real app window (xcb under Xvfb) through a biologist's first hour; run by
``test_real_window.py`` in a subprocess, once per phase:

- ``first``: open a stack, segment a slice, pick patches at clicked points, paint, save the set
  (default validation share), the wizard with that share, a tiny finetune, quit mid-run and
  confirm the real "Quit while work is running?" box.
- ``second``: relaunch, resume the unfinished run from the wizard's first page, before/after
  metrics, register, segment the volume, export labels.

Each phase checks that every control of every dock and wizard page it shows can be scrolled
into view inside the screen, takes screenshots of the screen (``QScreen.grabWindow(0)``) and
writes ``report-<phase>.json`` in OUT. Usage: ``python real_window_driver.py PHASE STACK OUT``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QPoint, QPointF, QRect, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox,
                               QLineEdit, QMessageBox, QScrollArea, QSlider, QWidget)

CONTROLS = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QSlider)


class Driver:
    def __init__(self, phase: str, stack: Path, out: Path):
        self.phase, self.stack, self.out = phase, stack, out
        self.report = {"phase": phase, "steps": [], "unreachable": [], "dialogs": [], "shots": []}
        self.window = None
        self.answerer = QTimer()
        self.answerer.setInterval(150)
        self.answerer.timeout.connect(self._answer_dialogs)
        self.answerer.start()

    # -- helpers -----------------------------------------------------------------------------
    def step(self, text: str) -> None:
        self.report["steps"].append(f"{time.monotonic() - START:6.1f}s {text}")
        print(self.report["steps"][-1], flush=True)

    def _answer_dialogs(self) -> None:
        """Answer the app's message boxes as a user would (Yes, else OK), noting their text."""
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.isVisible():
            self.report["dialogs"].append(f"{box.windowTitle()}: {box.text()}")
            self.shot(f"dialog-{len(self.report['dialogs'])}")
            button = box.button(QMessageBox.StandardButton.Yes) or box.button(QMessageBox.StandardButton.Ok)
            (button or box.buttons()[0]).click()

    def shot(self, name: str) -> None:
        path = self.out / f"{self.phase}-{len(self.report['shots']):02d}-{name}.png"
        QGuiApplication.primaryScreen().grabWindow(0).save(str(path))
        self.report["shots"].append(path.name)

    async def wait_for(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            await asyncio.sleep(0.05)

    def click(self, widget: QWidget, what: str) -> None:
        """A real mouse click on ``widget``, which must be on screen and enabled."""
        self.reachable(widget, what)
        assert widget.isEnabled(), f"{what} is disabled"
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton, pos=widget.rect().center())

    def reachable(self, widget: QWidget, what: str) -> bool:
        """Scroll ``widget`` into view; it must then lie inside the screen and be visible."""
        parent = widget.parentWidget()
        while parent is not None:
            if isinstance(parent, QScrollArea) and parent.widget() is not None \
                    and parent.widget().isAncestorOf(widget):
                parent.ensureWidgetVisible(widget, 2, 2)
            parent = parent.parentWidget()
        QApplication.processEvents()
        screen = QGuiApplication.primaryScreen().geometry()
        rect = QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size())
        ok = widget.isVisible() and not widget.visibleRegion().isEmpty() and screen.contains(rect)
        if not ok:
            self.report["unreachable"].append(
                f"{what}: {type(widget).__name__} '{_text(widget)}' at {rect.x()},{rect.y()} "
                f"{rect.width()}x{rect.height()} (screen {screen.width()}x{screen.height()})")
        return ok

    def check_controls(self, root: QWidget, where: str) -> int:
        controls = [w for w in root.findChildren(QWidget)
                    if isinstance(w, CONTROLS) and w.isVisibleTo(root) and not _internal(w)]
        for widget in controls:
            self.reachable(widget, where)
        return len(controls)

    def check_docks(self) -> None:
        checked = 0
        for name, dock in self.window.docks.items():
            dock.show()
            dock.raise_()
            QApplication.processEvents()
            checked += self.check_controls(dock, f"dock {name}")
        self.step(f"checked {checked} controls of {len(self.window.docks)} docks")

    # -- the phases --------------------------------------------------------------------------
    async def run(self) -> None:
        from empanada_desktop.ui.shell.main_window import MainWindow

        await self.wait_for(lambda: any(isinstance(w, MainWindow) and w.isVisible()
                                        for w in QApplication.topLevelWidgets()), 60, "the window")
        self.window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        await asyncio.sleep(0.3)
        size = self.window.frameGeometry()
        self.report["window"] = [size.width(), size.height()]
        self.report["minimum"] = [self.window.minimumSizeHint().width(),
                                  self.window.minimumSizeHint().height()]
        self.step(f"window {size.width()}x{size.height()}, stack open: {self.window.document.path}")
        self.shot("start")
        self.check_docks()
        if self.phase == "first":
            await self.first()
        else:
            await self.second()

    async def first(self) -> None:
        w = self.window
        panel = w.inference_panel
        panel.refresh_models()
        panel.select_model("tiny")
        w.docks["Inference"].raise_()
        self.click(panel.run2d_button, "Segment slice")
        await self.wait_for(lambda: "object(s) in this slice" in panel.status.text(), 120, "segment slice")
        self.step(panel.status.text())
        self.shot("segmented-slice")

        picker = w.patch_picker
        w.docks["Patches"].raise_()
        picker.size_spin.setValue(64)
        self.click(picker.click_button, "Click points")
        for row, col in ((40, 40), (40, 215), (215, 40), (215, 215), (128, 128)):
            self.click_image(row, col)
        self.step(f"clicked {len(picker.points)} points; markers {len(picker._markers)}")
        assert len(picker.points) == 5 and picker._markers, "clicked points have no markers"
        self.shot("clicked-points")
        self.click(picker.pick_button, "Pick patches")
        self.step(picker.info.text())
        assert len(w.training_set.patches) == 5

        training = w.training_panel
        w.docks["Training set"].raise_()
        view = training.open_patch(0)
        await asyncio.sleep(0.3)
        self.check_controls(view, "patch editor")
        view.controller.set_tool("brush")
        view.controller.stroke([(20, 20), (20, 44), (44, 44)], tool="brush")
        self.shot("painted")
        for _ in range(len(w.training_set.patches)):
            self.click(view.done_button, "Mark done") if not view.done_button.isChecked() else None
        self.click(view.close_button, "Close patch editor")
        self.step(training.count_label.text() + "; " + training.val_note.text())

        self.click(_button(training, "Save set..."), "Save set...")
        await asyncio.sleep(0.3)
        dialog = training.findChild(QWidget, "save_set_dialog")
        dialog.path_edit.setText(str(self.out / "home-work" / "my_set"))
        self.shot("save-dialog")
        self.click(dialog.save_button, "Save (training set)")
        await self.wait_for(lambda: w.training_set_dir() is not None, 30, "the set to be saved")
        self.step(f"saved the set to {w.training_set_dir()}")

        wizard = w.open_finetune_wizard()
        await asyncio.sleep(0.5)
        wizard.model_page.select_model("tiny")
        self.check_controls(wizard, "wizard model page")
        self.shot("wizard-model")
        self.click(wizard.button(wizard.WizardButton.NextButton), "Next (model)")
        await asyncio.sleep(0.3)
        data = wizard.data_page
        self.step(f"data page: validation {data.val_dir()}")
        assert data.val_dir() is not None, "the default validation share was not picked up"
        if data.remedy_box.isVisible():  # 4 training patches, batch 16: take the first remedy
            self.click(data.remedy_buttons["smaller_batch"], "remedy: smaller batch")
        self.check_controls(wizard, "wizard data page")
        self.shot("wizard-data")
        self.click(wizard.button(wizard.WizardButton.NextButton), "Next (data)")
        settings = wizard.settings_page
        await self.wait_for(lambda: settings.counts_task is not None and settings.counts_task.done(),
                            60, "trainable counts")
        settings.iterations.setValue(16)
        settings.patch_size.setValue(64)
        settings.batch_size.setValue(2)
        settings.device.setCurrentIndex(settings.device.findData("cpu"))
        self.check_controls(wizard, "wizard settings page")
        self.shot("wizard-settings")
        self.click(wizard.button(wizard.WizardButton.NextButton), "Next (settings)")
        run = wizard.run_page
        await self.wait_for(lambda: run.progress.value() >= 2, 180, "two finetuning steps")
        self.check_controls(wizard, "wizard run page")
        self.shot("finetuning")
        self.step(f"finetuning at {run.progress.value()} / {run.progress.maximum()}; quitting")
        w.close()  # File > Quit; the answerer confirms the real question box
        self.report["closed"] = not w.isVisible()
        self.step(f"after quit: window visible {w.isVisible()}")

    async def second(self) -> None:
        w = self.window
        wizard = w.open_finetune_wizard()
        await asyncio.sleep(0.5)
        page = wizard.model_page
        self.step(f"unfinished runs listed: {[r.label for r in page.runs]}")
        assert page.runs, "the run stopped by quitting is not listed"
        page.runs_list.setCurrentRow(0)
        self.shot("wizard-resume")
        self.click(wizard.button(wizard.WizardButton.NextButton), "Next (resume)")
        run = wizard.run_page
        self.step(f"resumed: curve keeps {len(run.plot.steps)} earlier steps; bar {run.progress.value()} / {run.progress.maximum()}")
        assert run.plot.steps and run.progress.maximum() == 16
        await self.wait_for(lambda: run.outcome in ("finished", "failed"), 300, "the resumed run")
        assert run.outcome == "finished", run.status.text()
        self.shot("finished")
        self.click(wizard.button(wizard.WizardButton.NextButton), "Next (results)")
        results = wizard.results_page
        await asyncio.sleep(0.3)
        cells = [[results.table.item(r, c).text() for c in range(3)] for r in range(results.table.rowCount())]
        self.report["metrics"] = cells
        self.step(f"before/after: {cells}")
        assert all(cell != "-" for row in cells for cell in row[:2]), "before/after metrics missing"
        if results.compare_task is not None:
            await self.wait_for(results.compare_task.done, 120, "the side-by-side comparison")
        self.check_controls(wizard, "wizard results page")
        self.shot("results")
        results.name_edit.setText("tiny_lab")
        self.click(results.register_button, "Save and register")
        self.step(results.saved_label.text())
        self.click(results.open_button, "Open in inference panel")
        self.click(wizard.button(wizard.WizardButton.FinishButton), "Finish")

        panel = w.inference_panel
        await asyncio.sleep(0.3)
        assert panel.model_combo.currentData() == "tiny_lab"
        self.click(panel.volume.run_button, "Segment volume")
        await self.wait_for(lambda: panel.volume.job is not None and not panel.volume.job.is_running,
                            300, "the volume")
        status = panel.volume.status.text() if hasattr(panel.volume, "status") else panel.status.text()
        self.step(f"volume: {status}")
        self.shot("volume")
        self.reachable(panel.export_button, "Export labels to TIFF")
        exported = panel.export_labels(self.out / "home-work" / "labels.tif")
        self.report["exported"] = str(exported)
        self.report["exported_mode"] = oct(exported.stat().st_mode & 0o777) if exported else None
        self.step(f"exported {exported}")
        w.close()


def _button(root: QWidget, text: str) -> QAbstractButton:
    return next(b for b in root.findChildren(QAbstractButton) if b.text() == text)


def _text(widget: QWidget) -> str:
    for name in ("text", "currentText", "toolTip"):
        value = getattr(widget, name, None)
        if callable(value) and value():
            return str(value())[:40]
    return widget.objectName()


def _internal(widget: QWidget) -> bool:
    """Parts of composite widgets (scroll bars, spin box line edits, the histogram's own)."""
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, (QAbstractSpinBox, QComboBox)) or type(parent).__module__.startswith("pyqtgraph"):
            return True
        parent = parent.parentWidget()
    return type(widget).__module__.startswith("pyqtgraph")


def click_image(driver: Driver, row: float, col: float) -> None:
    viewer = driver.window.viewer
    scene = viewer.view_box.mapViewToScene(QPointF(col, row))
    point = viewer.graphics.mapFromScene(scene)
    QTest.mouseClick(viewer.graphics.viewport(), Qt.MouseButton.LeftButton, pos=point)
    QApplication.processEvents()


Driver.click_image = click_image


def main() -> int:
    phase, stack, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    from empanada_desktop.ui.shell import app as app_module

    QApplication.instance() or QApplication(sys.argv[:1])
    holder = {}

    def start():
        driver = Driver(phase, stack, out)  # its dialog answerer also answers the restore offer
        holder["driver"] = driver
        QTimer.singleShot(0, lambda: begin(driver))

    def begin(driver):
        loop = asyncio.get_event_loop()
        if not loop.is_running():  # still inside the start-up dialogs: try again shortly
            QTimer.singleShot(100, lambda: begin(driver))
            return

        async def flow():
            try:
                await driver.run()
            except Exception:  # noqa: BLE001 - reported to the test
                driver.report["error"] = traceback.format_exc()
                print(driver.report["error"], flush=True)
                QTimer.singleShot(3000, lambda: os._exit(3))  # even if a dialog keeps the app up
                QApplication.quit()
            finally:
                (out / f"report-{phase}.json").write_text(json.dumps(driver.report, indent=1))

        asyncio.ensure_future(flow())

    QTimer.singleShot(0, start)
    status = app_module.run_app([str(stack)] if phase == "first" else [])
    report = holder["driver"].report
    (out / f"report-{phase}.json").write_text(json.dumps(report, indent=1))
    return status if "error" not in report else 3


START = time.monotonic()

if __name__ == "__main__":
    raise SystemExit(main())
