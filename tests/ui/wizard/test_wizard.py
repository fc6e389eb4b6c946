"""The finetune wizard end to end on a tiny model and tiny data; cancel and resume a run."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QLabel

from empanada_desktop.backend.events import Progress
from empanada_desktop.backend.finetune.run_folder import find_resumable_runs
from empanada_desktop.core.paths import models_dir
from empanada_desktop.core.registry import ModelRegistry
from empanada_desktop.ui.wizard.page_ids import PAGE_DATA, PAGE_RESULTS, PAGE_RUN, PAGE_SETTINGS
from empanada_desktop.ui.wizard.wizard import FinetuneWizard

RUN_TIMEOUT_MS = 240_000


@pytest.fixture
def tiny(tiny_model_dir):
    shutil.copytree(tiny_model_dir, models_dir() / "tiny")
    return "tiny"


@pytest.fixture
def data(tmp_path, make_set):
    return make_set(tmp_path / "train", 4, 0), make_set(tmp_path / "val", 2, 1)


def settle_settings(wizard, qtbot, iterations):
    page = wizard.settings_page
    qtbot.waitUntil(lambda: page.counts_task is not None and page.counts_task.done(), timeout=60000)
    page.iterations.setValue(iterations)
    page.patch_size.setValue(64)
    page.batch_size.setValue(2)
    page.device.setCurrentIndex(page.device.findData("cpu"))
    return page


def test_whole_wizard_finetunes_compares_and_registers(wizard, qtbot, tiny, data):
    train, val = data
    wizard.model_page.select_model(tiny)
    assert wizard.model_page.isComplete()
    wizard.next()
    assert wizard.currentId() == PAGE_DATA
    page = wizard.data_page
    page.add_folder(train)
    page.set_val_dir(val)
    assert page.total == 4 and "4 image/mask pair" in page.report_view.toPlainText()
    assert page.remedy_box.isVisibleTo(wizard) and not page.isComplete()  # 4 < batch 16
    page.choose_remedy("more_data")
    assert not page.isComplete()
    page.choose_remedy("smaller_batch")
    assert page.isComplete()
    wizard.next()
    assert wizard.currentId() == PAGE_SETTINGS

    settings = settle_settings(wizard, qtbot, iterations=3)
    counts = settings.counts
    assert counts["none"] < counts["stage4"] < counts["all"]  # stage4 really unfreezes more
    assert "M trainable" in settings.count_labels["stage4"].text()
    settings.patch_size.setValue(72)
    assert not settings.isComplete() and "64 or 80" in settings.patch_check.text()
    settings.patch_size.setValue(64)
    task = settings.estimate()
    qtbot.waitUntil(task.done, timeout=60000)
    assert task.result() > 0 and "per iteration" in settings.estimate_label.text()

    run = wizard.run_page
    wizard.next()
    assert wizard.currentId() == PAGE_RUN
    qtbot.waitUntil(lambda: run.outcome in ("finished", "failed"), timeout=RUN_TIMEOUT_MS)
    assert run.outcome == "finished", run.status.text()
    assert run.progress.value() == 3
    assert run.plot.steps[-1] == 3 and "total" in run.plot.losses
    assert run.metrics_table.item(0, 0).text() == "before"  # baseline first, then during the run
    assert run.metrics_table.rowCount() >= 2

    wizard.next()
    assert wizard.currentId() == PAGE_RESULTS
    results = wizard.results_page
    assert results.table.item(0, 0).text() != "-" and results.table.item(0, 1).text() != "-"
    qtbot.waitUntil(lambda: results.compare_task is not None and results.compare_task.done(),
                    timeout=60000)
    pixmaps = [w for w in results.gallery.findChildren(QLabel) if isinstance(w.pixmap(), QPixmap)
               and not w.pixmap().isNull()]
    assert len(pixmaps) == 2 * 4  # two validation patches x (image, truth, original, finetuned)
    assert "tiny_finetuned" not in ModelRegistry().names()  # nothing registered until saved
    with qtbot.waitSignal(wizard.modelRegistered, timeout=5000) as registered:
        assert results.save_and_register("tiny_lab")
    assert registered.args == ["tiny_lab"]
    assert ModelRegistry().get("tiny_lab").installed
    with qtbot.waitSignal(wizard.openInInference, timeout=5000) as opened:
        results.open_button.click()
    assert opened.args == ["tiny_lab"]
    finish = wizard.button(wizard.WizardButton.FinishButton)
    assert results.isFinalPage() and finish.isVisible() and finish.isEnabled()


def start_run(wizard, tiny, train, iterations):
    from empanada_desktop.backend.finetune.config import FinetuneConfig

    wizard.state.config = FinetuneConfig(model=tiny, train_dirs=(train,), new_name="tiny_resumed",
                                         iterations=iterations, patch_size=64, batch_size=2,
                                         device="cpu", register=False, validations=0)
    wizard.state.model_name = tiny
    wizard.run_page.autostart = False
    wizard.setStartId(PAGE_RUN)
    wizard.restart()
    assert wizard.run_page.start(config=wizard.state.config)
    return wizard.run_page


def test_cancel_saves_a_checkpoint_and_the_run_resumes_from_the_first_page(qtbot, wizard, tiny, data):
    train, _ = data
    run = start_run(wizard, tiny, train, iterations=4)
    run.job.event.connect(lambda event: run.cancel() if isinstance(event, Progress) else None)
    qtbot.waitUntil(lambda: run.outcome in ("cancelled", "finished", "failed"), timeout=RUN_TIMEOUT_MS)
    assert run.outcome == "cancelled", run.status.text()
    assert run.resume_button.isVisibleTo(wizard) and not run.isComplete()
    stopped_at = run.progress.value()
    assert 1 <= stopped_at < 4
    runs = find_resumable_runs()
    assert [r.new_name for r in runs] == ["tiny_resumed"]

    # Later, from a new wizard: the first page lists the run and resuming jumps to the run page.
    later = FinetuneWizard(training_set_dir=lambda: None)
    qtbot.addWidget(later)
    later.show()
    later.model_page.select_run(runs[0].run_dir)
    assert later.model_page.isComplete()
    later.next()
    assert later.currentId() == PAGE_RUN
    resumed = later.run_page
    # The curve before the stop is back at once, and the bar reads the run's real total.
    assert resumed.plot.steps == list(range(1, stopped_at + 1))
    assert resumed.progress.maximum() == 4 and resumed.progress.value() == stopped_at
    assert "organelle vs background" in [item[1].text for item in resumed.plot.loss_plot.legend.items]
    qtbot.waitUntil(lambda: resumed.outcome in ("finished", "failed"), timeout=RUN_TIMEOUT_MS)
    assert resumed.outcome == "finished", resumed.status.text()
    assert resumed.result.steps_done == 4 and resumed.result.exported_pth.is_file()
    assert resumed.plot.steps == [1, 2, 3, 4]  # one curve, no step twice
    assert find_resumable_runs() == []


def test_missing_weights_block_the_model_page_with_the_file_to_import(wizard):
    wizard.model_page.select_model("MitoNet_v1")
    assert not wizard.model_page.isComplete()
    assert "MitoNet_v1.pth" in wizard.model_page.info.toPlainText()
    assert "href='https://zenodo.org" in wizard.model_page.info.toHtml().replace('"', "'")


def test_missing_weights_are_imported_from_the_model_page(wizard, qtbot, tiny_model_dir, tmp_path):
    page = wizard.model_page
    page.select_model("MitoNet_v1")
    assert page.weights_button.isVisibleTo(wizard)
    assert page.weights_button.text() == "Import MitoNet_v1.pth for MitoNet_v1 ..."
    download = tmp_path / "MitoNet_v1.pth"
    shutil.copy(tiny_model_dir / "tiny.pth", download)  # stands in for the real download
    task = page.import_weights(download)
    qtbot.waitUntil(task.done, timeout=120_000)
    page.select_model("MitoNet_v1")
    assert page.selected_model().installed and page.isComplete()
    assert not page.weights_button.isVisibleTo(wizard)


def test_data_page_shows_problems_and_blocks(wizard, tiny, tmp_path):
    wizard.model_page.select_model(tiny)
    wizard.next()
    broken = tmp_path / "broken" / "src"
    (broken / "images").mkdir(parents=True)
    (broken / "masks").mkdir()
    (broken / "images" / "a.tiff").write_bytes(b"not a tiff")
    wizard.data_page.add_folder(tmp_path / "broken")
    assert not wizard.data_page.isComplete()
    assert "Problem" in wizard.data_page.report_view.toPlainText()
