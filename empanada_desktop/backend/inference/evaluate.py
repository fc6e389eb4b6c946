"""Score a model on labelled images: IoU, PQ and F1@0.5 (docs/EMPANADA_FORMATS.md section 7).

Used by ``empanada-desktop evaluate`` and by finetuning's validation. Post-processing uses the
model config's own engine parameters (confidence, center threshold, NMS kernel), as empanada's
validation does, unless an InferenceConfig is given.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.engine2d import Engine2D
from empanada_desktop.core.errors import DatasetError
from empanada_desktop.core.metrics import aggregate, panoptic_quality


def validation_config(model_config) -> InferenceConfig:
    """The InferenceConfig matching a model config's ``engine_params``, in float32.

    int8 is off: validation measures the weights themselves, and a model in training changes
    after every step (an int8 copy kept for it would be stale).
    """
    params = model_config.engine_params
    return InferenceConfig(
        confidence_thr=min(max(float(params.confidence_thr), 0.01), 0.99),
        center_confidence_thr=float(params.nms_threshold),
        nms_kernel=int(params.nms_kernel),
        max_objects=int(params.label_divisor),
        int8="off",
    )


def _arrays(item):
    if isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], np.ndarray):
        return item[0], item[1]
    from empanada_desktop.core.dataset import read_pair

    image, mask, _ = read_pair(item)
    return image, mask


def evaluate(
    model,
    model_config,
    pairs_or_arrays: Iterable,
    device=None,
    inference_config: InferenceConfig | None = None,
) -> dict:
    """Segment every image and compare with its mask.

    Args:
        model: a module following empanada's model contract; its train/eval state (including
            frozen BatchNorm layers) is restored afterwards.
        model_config: the model's ModelConfig.
        pairs_or_arrays: ``core.dataset.Pair`` objects or ``(image uint8, mask int)`` tuples.
        device: where to run; by default where the model's parameters are.
        inference_config: post-processing settings; by default the config's engine_params.

    Returns:
        ``dict(iou, pq, sq, rq, f1, tp, fp, fn, images)`` pooled over all images.

    Raises:
        DatasetError: no images were given, or an image and its mask differ in shape.
    """
    if device is None:
        parameter = next(iter(model.parameters()), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    modes = [(module, module.training) for module in model.modules()]
    try:
        engine = Engine2D(model, model_config, inference_config or validation_config(model_config), device)
        results = []
        for item in pairs_or_arrays:
            image, mask = _arrays(item)
            if image.shape != mask.shape:
                raise DatasetError(f"image shape {image.shape} differs from its mask's {mask.shape}")
            results.append(panoptic_quality(engine.segment(image), mask))
    finally:
        for module, training in modes:
            module.training = training
    if not results:
        raise DatasetError("no labelled images to evaluate on; add image/mask pairs")
    return aggregate(results)
