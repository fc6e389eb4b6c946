import numpy as np
import pytest

from empanada_desktop.core.metrics import aggregate, panoptic_quality, semantic_iou


def test_semantic_iou_known_value():
    pred = np.zeros((4, 4), int)
    gt = np.zeros((4, 4), int)
    pred[:2] = 5  # 8 pixels
    gt[1:3] = 1  # 8 pixels, 4 shared
    assert semantic_iou(pred, gt) == pytest.approx(4 / 12)
    assert semantic_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        semantic_iou(np.zeros((2, 2)), np.zeros((2, 3)))


def test_identical_labels_score_one_whatever_the_ids():
    gt = np.zeros((10, 10), np.int32)
    gt[1:4, 1:4] = 1
    gt[6:9, 6:9] = 2
    pred = np.where(gt == 1, 1007, np.where(gt == 2, 1003, 0))
    r = panoptic_quality(pred, gt)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)
    assert r["pq"] == pytest.approx(1.0) and r["f1"] == pytest.approx(1.0)


def test_partial_matches_fp_fn_and_pq():
    gt = np.zeros((10, 20), np.int32)
    gt[0:4, 0:4] = 1  # 16 px, predicted with IoU 12/16 = 0.75
    gt[0:4, 10:14] = 2  # 16 px, predicted with IoU 4/28 < 0.5 -> FN + FP
    gt[6:8, 0:2] = 3  # missed -> FN
    pred = np.zeros_like(gt)
    pred[0:3, 0:4] = 1
    pred[0:4, 13:19] = 2  # 24 px, intersection 4
    pred[8:10, 18:20] = 9  # spurious -> FP
    r = panoptic_quality(pred, gt)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 2, 2)
    assert r["sq"] == pytest.approx(0.75)
    assert r["rq"] == pytest.approx(1 / (1 + 1 + 1))
    assert r["pq"] == pytest.approx(0.75 / 3)
    assert r["f1"] == pytest.approx(2 / (2 + 2 + 2))


def test_iou_exactly_half_is_not_a_match():
    gt = np.zeros((2, 4), int)
    gt[:, :2] = 1  # 4 px
    pred = np.zeros_like(gt)
    pred[:, :3] = 1  # 6 px, inter 4, union 6 -> 0.667 match
    assert panoptic_quality(pred, gt)["tp"] == 1
    pred2 = np.zeros((1, 4), int)
    pred2[0, :2] = 1
    gt2 = np.zeros((1, 4), int)
    gt2[0, 1:3] = 1  # inter 1, union 3 -> no match
    assert panoptic_quality(pred2, gt2)["tp"] == 0


def test_many_objects_vectorised():
    rng = np.random.default_rng(0)
    gt = np.zeros((300, 300), np.int32)
    k = 0
    for y in range(0, 300, 10):
        for x in range(0, 300, 10):
            k += 1
            gt[y : y + 8, x : x + 8] = k
    perm = rng.permutation(k) + 1
    pred = np.where(gt > 0, perm[np.maximum(gt - 1, 0)], 0)
    r = panoptic_quality(pred, gt)
    assert r["tp"] == 900 and r["fp"] == 0 and r["fn"] == 0


def test_empty_images():
    z = np.zeros((5, 5), int)
    assert panoptic_quality(z, z)["pq"] == 1.0
    one = z.copy()
    one[1:3, 1:3] = 1
    r = panoptic_quality(z, one)
    assert r["pq"] == 0.0 and r["fn"] == 1 and r["f1"] == 0.0


def test_aggregate_pools_counts():
    a = np.zeros((4, 4), int)
    a[:2, :2] = 1
    perfect = panoptic_quality(a, a)
    missed = panoptic_quality(np.zeros_like(a), a)
    agg = aggregate([perfect, missed])
    assert agg["f1"] == pytest.approx(2 / (2 + 0 + 1))
    assert agg["iou"] == pytest.approx(4 / 8)
    assert agg["images"] == 2
    with pytest.raises(ValueError):
        aggregate([])
