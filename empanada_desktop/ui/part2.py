"""Part 2's additions to the main window: the inference panel, the finetune wizard and the model
manager (menus), the patch picker's prediction provider, and their screenshots."""

from __future__ import annotations

import logging

from PySide6.QtGui import QAction

from empanada_desktop.ui.screenshots import register_screen

log = logging.getLogger(__name__)


def viewport_of(viewer):
    """The visible (row0, row1, col0, col1) of the viewer's image, from its pyqtgraph ViewBox."""

    def visible():
        (x0, x1), (y0, y1) = viewer.view_box.viewRange()
        return int(y0), int(y1) + 1, int(x0), int(x1) + 1

    return visible


def install(main_window) -> None:
    """Add the inference panel, the Models menu and the finetune wizard to ``main_window``."""
    from empanada_desktop.ui.inference_panel import InferencePanel
    from empanada_desktop.ui.model_manager import ModelManagerDialog
    from empanada_desktop.ui.wizard.wizard import FinetuneWizard

    panel = InferencePanel(main_window.document, viewport_of(main_window.viewer))
    main_window.inference_panel = panel
    main_window.add_panel("Inference", panel, "right")
    if hasattr(main_window, "set_prediction_provider"):
        main_window.set_prediction_provider(panel.prediction_provider)

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
    manage = QAction("Manage models ...", main_window)
    manage.setStatusTip("Import, rename, remove and export models")
    manage.triggered.connect(open_manager)
    main_window.add_menu_action("&Models", finetune)
    main_window.add_menu_action("&Models", manage)
    main_window.open_finetune_wizard = open_wizard
    main_window.open_model_manager = open_manager


def show_in_inference(main_window, name: str) -> None:
    panel = main_window.inference_panel
    panel.select_model(name)
    dock = main_window.docks.get("Inference")
    if dock is not None:
        dock.show()
        dock.raise_()


# -- screenshots -----------------------------------------------------------------------------

def _wizard_on(page_id: int):
    def factory():
        from empanada_desktop.ui.wizard.screens import wizard_at

        return wizard_at(page_id), (1000, 720)

    return factory


def _inference_panel():
    from empanada_desktop.ui.inference_panel import InferencePanel
    from empanada_desktop.ui.viewer import demo_document

    return InferencePanel(demo_document()), (380, 820)


def _model_manager():
    from empanada_desktop.ui.model_manager import ModelManagerDialog

    return ModelManagerDialog(), (860, 480)


for _number, _name in enumerate(("model", "data", "settings", "run", "results")):
    register_screen(f"wizard_{_number + 1}_{_name}", _wizard_on(_number))
register_screen("inference_panel", _inference_panel)
register_screen("model_manager", _model_manager)
