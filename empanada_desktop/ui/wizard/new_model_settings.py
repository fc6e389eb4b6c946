"""The settings page's hooks for "Train a new model" and for training on all GPUs.

Kept apart from ``settings_page.py`` so that the finetuning path there stays as it was: the
settings page calls ``prepare_settings_page`` when the wizard trains a new model, and
``add_all_gpus_choice`` when it fills its device list.
"""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox

ALL_GPUS_PREFIX = "all:"


def prepare_settings_page(page, new_model: dict) -> dict:
    """Padding, default iterations and name, and the layer choices of a new model."""
    from empanada_desktop.backend.finetune.config import default_of
    from empanada_desktop.backend.finetune.train_config import train_default_of
    from empanada_desktop.backend.models import PADDING_FACTORS

    page.padding_factor = PADDING_FACTORS[new_model["architecture"]]
    if page.iterations.value() == default_of("iterations"):
        page.iterations.setValue(train_default_of("iterations"))
    if not page.new_name.text():
        page.new_name.setText(f"{new_model['architecture'].replace('Panoptic', '').replace('PR', '')}_"
                              f"{new_model['encoder']}_new")
    random_init = new_model.get("init") == "random"
    for name, button in page.layer_buttons.items():
        button.setEnabled(not random_init or name == "all")
    if random_init or not any(b.isChecked() for b in page.layer_buttons.values()):
        page.layer_buttons["all"].setChecked(True)
    page.setTitle("Settings (new model)")
    page.setSubTitle(
        "A new model learns everything from your data: plan for more iterations than finetuning "
        "(hundreds to thousands; empanada-napari allows up to 10,000) and hundreds of patches. "
        + ("From random weights the whole model trains (layers 'all')." if random_init else
           "From CEM1.5M weights you may keep encoder stages frozen, as when finetuning.")
    )
    return new_model


def add_all_gpus_choice(combo: QComboBox) -> int:
    """Add "all N GPUs" to the device list when more than one CUDA GPU is usable; returns N."""
    from empanada_desktop.backend.devices import list_devices

    gpus = [info for info in list_devices() if info.kind == "cuda" and info.available]
    if len(gpus) < 2:
        return 0
    combo.insertItem(1, f"all {len(gpus)} GPUs (one training process per GPU, through torchrun)",
                     f"{ALL_GPUS_PREFIX}{len(gpus)}")
    return len(gpus)
