"""The live page's training-health panel: collapsed by default, plain words when the model drifts,
and a run stopped by the health monitor is shown as stopped, not as finished or cancelled."""

from __future__ import annotations

from pathlib import Path

from empanada_desktop.backend.events import Health
from empanada_desktop.backend.finetune.loop import FinetuneResult
from empanada_desktop.ui.wizard.health_plot import HealthPanel
from empanada_desktop.ui.wizard.run_page import RunPage
from empanada_desktop.ui.wizard.state import WizardState

START = {"stage3": 2.5, "stage4": 9.0}


def test_panel_is_collapsed_and_says_in_words_when_the_encoder_drifts(qtbot):
    panel = HealthPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert not panel.graphics.isVisible() and panel.toggle.text() == "Show health plots"
    panel.add(Health(step=1, grad_norms={"heads": 1.0, "encoder": 0.1}, encoder_scales=START, start_scales=START))
    assert "fine" in panel.verdict.text()
    panel.add(Health(step=5, grad_norms={"heads": 1.0}, encoder_scales={"stage3": 3.0, "stage4": 120.0},
                     start_scales=START, status="drifting", text="the encoder's stage4 output grew 13.3x since the start."))
    assert "drifting" in panel.verdict.text() and "grew 13.3x" in panel.verdict.text()
    panel.add(Health(step=6, grad_norms={"heads": 1.0}, start_scales=START))  # a calm step keeps the warning
    assert "drifting" in panel.verdict.text()
    xs, ys = panel.series[("scale", "stage4")]
    assert xs == [1.0, 5.0] and ys[-1] == 120.0 / 9.0
    assert panel.series[("grad", "heads")][0] == [1.0, 5.0, 6.0]
    panel.toggle.click()
    assert panel.graphics.isVisible() and panel.toggle.text() == "Hide health plots"
    panel.clear()
    assert not panel.series and "drifting" not in panel.verdict.text()


def test_run_page_routes_health_events_and_reports_a_health_stop(qtbot):
    page = RunPage(WizardState())
    qtbot.addWidget(page)
    page.on_event(Health(step=1, grad_norms={"heads": 1.0}, encoder_scales=START, start_scales=START))
    assert ("grad", "heads") in page.health.series
    problem = "Training stopped at step 7 of 20: the encoder's stage4 output grew 1e+05x since the start. Try: ..."
    page.on_finished(FinetuneResult(run_dir=Path("run"), model_name="m", stopped=True, health_problem=problem))
    assert page.outcome == "failed" and not page.isComplete()
    assert "Training stopped at step 7" in page.status.text() and page.resume_button.isHidden()


def test_layers_advice_states_the_safe_defaults_health_py_applies():
    from empanada_desktop.backend.finetune import health
    from empanada_desktop.ui.wizard import advice

    assert f"{health.SAFE_ENCODER_LR_SCALE:g} x the learning rate" in advice.LAYERS_INTRO
    assert health.SAFE_GRAD_CLIP > 0 and "clipped gradients" in advice.LAYERS_INTRO
