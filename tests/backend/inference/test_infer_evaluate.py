import numpy as np
import pytest

from empanada_desktop.backend.inference.evaluate import evaluate
from empanada_desktop.core.errors import DatasetError

from .fakes import BlobModel, blob_image, model_config


def test_perfect_and_imperfect_scores_and_training_mode_restored():
    model = BlobModel()
    model.train()
    image = blob_image((64, 64), [(20, 20), (44, 44)], 12)
    yy, xx = np.mgrid[:64, :64]
    mask = np.zeros((64, 64), np.int32)
    mask[np.hypot(yy - 20, xx - 20) <= 12 * 0.66] = 1
    mask[np.hypot(yy - 44, xx - 44) <= 12 * 0.66] = 2
    wrong = np.zeros_like(mask)
    wrong[:10, :10] = 1
    scores = evaluate(model, model_config(), [(image, mask), (image, wrong)], device="cpu")
    assert model.training  # restored for the finetuning loop
    assert scores["tp"] == 2 and scores["fp"] == 2 and scores["fn"] == 1
    assert scores["f1"] == pytest.approx(4 / (4 + 2 + 1))
    assert 0 < scores["iou"] < 1 and 0 < scores["pq"] < 1
    with pytest.raises(DatasetError):
        evaluate(model, model_config(), [], device="cpu")
