"""The main window's model features: the inference panel, the Models menu (finetune wizard and
model manager), and the model that pre-fills the patches the patch picker picks."""

from __future__ import annotations

import logging

from PySide6.QtGui import QAction

from empanada_desktop.ui.models.inference_panel import InferencePanel
from empanada_desktop.ui.models.model_manager import ModelManagerDialog
from empanada_desktop.ui.training_data.suggestions_panel import ModelChoice
from empanada_desktop.ui.wizard.wizard import FinetuneWizard

log = logging.getLogger(__name__)


def viewport_of(viewer):
    """The visible (row0, row1, col0, col1) of the viewer's image, from its pyqtgraph ViewBox."""

    def visible():
        (x0, x1), (y0, y1) = viewer.view_box.viewRange()
        return int(y0), int(y1) + 1, int(x0), int(x1) + 1

    return visible


def add_model_features(main_window) -> None:
    """Add the inference panel, the Models menu and the finetune wizard to ``main_window``."""
    panel = InferencePanel(main_window.document, viewport_of(main_window.viewer))
    main_window.inference_panel = panel
    main_window.add_panel("Inference", panel, "right")
    main_window.set_prediction_provider(panel.prediction_provider)
    main_window.patch_picker.set_model_source(lambda: model_choice(panel))
    # The panel's own status line may be scrolled away on a small screen: repeat results below.
    panel.labelsWritten.connect(lambda: main_window.statusBar().showMessage(panel.status.text(), 20000))

    def open_wizard() -> FinetuneWizard:
        wizard = FinetuneWizard(main_window, training_set_dir=main_window.training_set_dir)
        wizard.modelRegistered.connect(lambda name: panel.refresh_models())
        wizard.openInInference.connect(lambda name: show_in_inference(main_window, name))
        main_window.finetune_wizard = wizard
        wizard.show()
        return wizard

    def open_manager() -> ModelManagerDialog:
        dialog = ModelManagerDialog(main_window)
        dialog.modelsChanged.connect(lambda: panel.refresh_models())
        main_window.model_manager = dialog
        dialog.show()
        return dialog

    finetune = QAction("Finetune a model ...", main_window)
    finetune.setStatusTip("Adapt a model to your images, step by step")
    finetune.triggered.connect(open_wizard)
    train = QAction("Train a new model ...", main_window)
    train.setStatusTip("A model of your own from labelled patches (the wizard's 'Train a new model')")
    train.triggered.connect(lambda: open_wizard().model_page.train_radio.setChecked(True))
    manage = QAction("Manage models ...", main_window)
    manage.setStatusTip("Import, rename, remove and export models")
    manage.triggered.connect(open_manager)
    main_window.add_menu_action("&Models", finetune)
    main_window.add_menu_action("&Models", train)
    main_window.add_menu_action("&Models", manage)
    main_window.open_finetune_wizard = open_wizard
    main_window.open_model_manager = open_manager


def model_choice(panel: InferencePanel) -> ModelChoice | None:
    """The inference panel's model and settings, for "Suggest patches" (None: no model yet).
    The panel's loaded copy of the model is reused; settings it refuses raise their UserError."""
    name = panel.model_combo.currentData()
    if name is None:
        return None
    return ModelChoice(name, panel.settings(), lambda device: panel.cache.get(name, device))


def show_in_inference(main_window, name: str) -> None:
    """Select the model ``name`` in the inference panel and bring the panel to the front."""
    panel = main_window.inference_panel
    panel.select_model(name)
    dock = main_window.docks.get("Inference")
    if dock is not None:
        dock.show()
        dock.raise_()
