"""The "suggest_patches" screen: the viewer and the Patches panel after *Suggest* on the demo
stack, with the heatmap, the outlined suggestions and one of them accepted.

The model is the first registered model with weights (e.g. MitoNet_v1 when installed), or else
a ResNet-18 Panoptic-DeepLab with random weights, built in memory: the screen then shows the
controls but little uncertainty. The suggestions are computed here, synchronously (seconds).
"""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QHBoxLayout, QWidget

from empanada_desktop.ui.shell.layout import scrollable
from empanada_desktop.ui.shell.screen_registry import register_screen
from empanada_desktop.ui.training_data.patch_picker import PatchPicker
from empanada_desktop.ui.training_data.training_set import TrainingSet
from empanada_desktop.ui.viewer.document import demo_document
from empanada_desktop.ui.viewer.viewer import Viewer

log = logging.getLogger(__name__)
SIZE = (1366, 768)


def screen_model():
    """``(name, model, model_config)`` on the CPU for the screen (see the module docstring)."""
    import dataclasses

    from empanada_desktop.backend.loading import load_registered
    from empanada_desktop.core.registry import ModelRegistry

    registry = ModelRegistry()
    for entry in registry.list():
        if entry.installed:
            try:
                model, config = load_registered(entry, "cpu")
                return entry.name, model, config
            except Exception:  # noqa: BLE001 - an unusable file: try the next one
                log.info("model %s not usable for the screen", entry.name, exc_info=True)
    from empanada_desktop.backend.models import build_model

    config = registry.get("MitoNet_v1").config
    config = dataclasses.replace(config, architecture="PanopticDeepLabPR", encoder="resnet18", padding_factor=16)
    model = build_model("PanopticDeepLabPR", encoder="resnet18", num_classes=config.num_classes).eval()
    return "random ResNet-18", model, config


def _suggest_screen():
    from empanada_desktop.backend.events import run_to_end
    from empanada_desktop.backend.inference.config import InferenceConfig
    from empanada_desktop.backend.suggest import SuggestConfig, suggest_patches

    document = demo_document()
    viewer = Viewer(document)
    training_set = TrainingSet()
    picker = PatchPicker(document, viewer, training_set)
    picker.size_spin.setValue(64)
    box = picker.suggestions
    box.count_spin.setValue(6)
    name, model, model_config = screen_model()
    config = SuggestConfig(model=name, image=document.image, n=6, patch_size=64, scope="slice",
                           plane=document.plane, index=document.index, device="cpu",
                           inference=InferenceConfig(device="cpu"))
    _events, result = run_to_end(suggest_patches(config, model=model, model_config=model_config))
    box._on_done(result, id(document.image))
    box.accept_current()  # #1 becomes a training-set patch (yellow); the others stay suggestions
    box.info.setText(f"Model: {name}. " + box.info.text())
    container = QWidget()
    layout = QHBoxLayout(container)
    layout.addWidget(viewer, 1)
    panel = scrollable(picker)
    panel.setFixedWidth(max(panel.minimumWidth(), 400))
    layout.addWidget(panel)
    container._keep = (training_set, document)
    return container, SIZE


register_screen("suggest_patches", _suggest_screen)
