"""Before/after without a validation set: both models scored on the training patches.

The finetuned model has learned from those patches, so the numbers are optimistic; the results
page says so. It is still better than an empty table for a first run without held-out patches.
"""

from __future__ import annotations

from pathlib import Path

MAX_TRAINING_PAIRS = 24  # enough for a stable average, quick on a CPU

OPTIMISTIC_NOTE = ("No validation set: both models were scored on (up to {n}) training patches, "
                   "which the finetuned model has learned from, so 'after' is optimistic. Hold out "
                   "a validation share when you save the training set for an honest comparison.")


def training_pairs(train_dirs) -> list:
    """The image/mask pairs of the training folders, at most MAX_TRAINING_PAIRS, spread evenly."""
    from empanada_desktop.core.dataset import scan_dataset

    pairs = []
    for root in train_dirs or ():
        if Path(root).is_dir():
            pairs += [p for group in scan_dataset(root).sources.values() for p in group]
    if len(pairs) > MAX_TRAINING_PAIRS:
        step = len(pairs) / MAX_TRAINING_PAIRS
        pairs = [pairs[int(i * step)] for i in range(MAX_TRAINING_PAIRS)]
    return pairs


def training_metrics_job(model_name: str, pth: Path, yaml_path: Path, pairs, device: str = "cpu"):
    """Worker job: ``(before, after)`` metrics of the original and the finetuned model on ``pairs``."""

    def job(stop):
        from empanada_desktop.backend.inference.evaluate import evaluate
        from empanada_desktop.backend.loading import load_registered
        from empanada_desktop.backend.torchscript import load_model
        from empanada_desktop.core.dataset import read_pair
        from empanada_desktop.core.model_config import ModelConfig

        arrays = [read_pair(pair)[:2] for pair in pairs]
        base_model, base_config = load_registered(model_name, device=device)
        before = evaluate(base_model, base_config, arrays, device=device)
        if stop():
            return None
        new_model = load_model(pth, device=device)
        after = evaluate(new_model, ModelConfig.from_yaml(yaml_path), arrays, device=device)
        return before, after
        yield  # pragma: no cover - makes this a generator

    return job
