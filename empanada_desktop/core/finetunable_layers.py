"""The finetunable-layer vocabulary: which encoder stages a finetuning run may train.

Defined once here (no torch) so the finetune config, the models' stage maps, the CLI flags and
the wizard's choices and advice all read the same words.
"""

from __future__ import annotations

from empanada_desktop.core.errors import ConfigError

# The encoder stages that can be unfrozen, shallowest first ("stem" always goes with "all").
ENCODER_STAGES = ("stage1", "stage2", "stage3", "stage4")
# Finetunable-layer choices, fewest trainable parameters first: "stageK" trains stage K and
# every deeper stage; the decoders and heads always train.
LAYER_CHOICES = ("none", *reversed(ENCODER_STAGES), "all")


def check_layers(value: str) -> str:
    """``value`` if it is one of ``LAYER_CHOICES``; else the one ``ConfigError`` for it."""
    if value not in LAYER_CHOICES:
        raise ConfigError(
            f"layers {value!r}: choose one of {', '.join(LAYER_CHOICES)} "
            "(start with 'none'; 'stage4' is usually the best trade-off)."
        )
    return value
