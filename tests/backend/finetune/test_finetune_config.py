"""FinetuneConfig vocabulary: the layer choices and the defaults, defined once."""

from __future__ import annotations

import pytest

from empanada_desktop.backend.finetune.config import LAYER_CHOICES, check_layers, default_of
from empanada_desktop.core.errors import ConfigError


def test_default_of_reads_the_dataclass_defaults():
    assert (default_of("iterations"), default_of("patch_size"), default_of("batch_size")) == (100, 256, 16)
    assert (default_of("seed"), default_of("checkpoint_every"), default_of("layers")) == (0, 50, "none")
    assert default_of("extra") == {}
    with pytest.raises(KeyError):
        default_of("no_such_setting")
    with pytest.raises(KeyError):
        default_of("model")  # required, no default


def test_check_layers_is_the_one_message():
    assert LAYER_CHOICES == ("none", "stage4", "stage3", "stage2", "stage1", "all")
    assert check_layers("stage4") == "stage4"
    with pytest.raises(ConfigError, match=r"layers 'stage5': choose one of none, stage4"):
        check_layers("stage5")


def test_stages_use_the_same_check():
    pytest.importorskip("torch")
    from empanada_desktop.backend.models.stages import STAGES, trainable_stages

    assert trainable_stages("stage3") == ("stage3", "stage4")
    assert trainable_stages("all") == STAGES == ("stem", "stage1", "stage2", "stage3", "stage4")
    with pytest.raises(ConfigError, match=r"layers 'stage0': choose one of"):
        trainable_stages("stage0")
