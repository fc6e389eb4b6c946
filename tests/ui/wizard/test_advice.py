"""The wizard's advice covers exactly the layer choices the finetune config accepts."""

from __future__ import annotations

from empanada_desktop.backend.finetune.config import LAYER_CHOICES
from empanada_desktop.ui.wizard import advice


def test_advice_keys_are_the_layer_choices():
    assert tuple(advice.LAYERS) == LAYER_CHOICES
