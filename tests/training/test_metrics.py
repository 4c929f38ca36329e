"""Metrics against confusion matrices worked out by hand (numbers written out, not recomputed)."""

from __future__ import annotations

import numpy as np
import pytest

from autors.training import metrics as M


def _samples(counts: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(true, pred, how many) triples -> target and prediction vectors."""
    target = np.concatenate([np.full(n, t) for t, _, n in counts])
    pred = np.concatenate([np.full(n, p) for _, p, n in counts])
    return target, pred


def test_three_class_matrix_by_hand() -> None:
    #            pred0 pred1 pred2
    #   true0      5     1     0     row sum 6
    #   true1      2     3     1     row sum 6
    #   true2      0     0     4     row sum 4
    #   col sums   7     4     5     total 16, trace 12
    target, pred = _samples([(0, 0, 5), (0, 1, 1), (1, 0, 2), (1, 1, 3), (1, 2, 1), (2, 2, 4)])
    # unlabelled samples (-1) must be ignored whatever they were predicted as
    target = np.concatenate([target, [-1, -1, -1]])
    pred = np.concatenate([pred, [0, 1, 2]])
    cm = M.confusion_matrix(target, pred, 3)
    assert cm.tolist() == [[5, 1, 0], [2, 3, 1], [0, 0, 4]]

    out = M.summarize(cm, ["water", "crop", "forest"])
    assert out["oa"] == pytest.approx(12 / 16)  # 0.75
    assert out["per_class_accuracy"] == pytest.approx(
        {"water": 5 / 6, "crop": 3 / 6, "forest": 4 / 4}
    )
    assert out["aa"] == pytest.approx((5 / 6 + 0.5 + 1.0) / 3)  # 0.7778
    # pe = (6*7 + 6*4 + 4*5) / 16^2 = 86/256; kappa = (192/256 - 86/256) / (170/256) = 106/170
    assert out["kappa"] == pytest.approx(106 / 170)  # 0.6235
    # IoU = TP / (row + col - TP): 5/8, 3/7, 4/5
    assert out["per_class_iou"] == pytest.approx({"water": 5 / 8, "crop": 3 / 7, "forest": 4 / 5})
    assert out["miou"] == pytest.approx((5 / 8 + 3 / 7 + 4 / 5) / 3)  # 0.6179
    assert out["support"] == {"water": 6, "crop": 6, "forest": 4}
    assert out["num_samples"] == 16


def test_class_absent_from_reference_but_predicted() -> None:
    #   true0: 3 right, 1 predicted as class 2;  true1: 2 right;  class 2 never in the reference
    cm = M.confusion_matrix(*_samples([(0, 0, 3), (0, 2, 1), (1, 1, 2)]), num_classes=3)
    assert cm.tolist() == [[3, 0, 1], [0, 2, 0], [0, 0, 0]]
    out = M.summarize(cm, ["a", "b", "c"])
    assert out["oa"] == pytest.approx(5 / 6)
    assert out["per_class_accuracy"]["c"] is None  # undefined: no reference sample
    assert out["aa"] == pytest.approx((3 / 4 + 1.0) / 2)  # over the two present classes only
    # rows 4,2,0; cols 3,2,1 -> pe = 16/36; kappa = (5/6 - 4/9) / (5/9) = 7/10
    assert out["kappa"] == pytest.approx(0.7)
    # class c: predicted once, never true -> IoU 0 (counts in mIoU)
    assert out["per_class_iou"] == pytest.approx({"a": 3 / 4, "b": 1.0, "c": 0.0})
    assert out["miou"] == pytest.approx((0.75 + 1.0 + 0.0) / 3)


def test_class_absent_everywhere_is_left_out_of_miou() -> None:
    cm = np.array([[2, 1, 0], [1, 2, 0], [0, 0, 0]])
    assert M.per_class_iou(cm) == pytest.approx([2 / 4, 2 / 4, None])
    assert M.mean_iou(cm) == pytest.approx(0.5)
    assert M.average_accuracy(cm) == pytest.approx(2 / 3)


def test_kappa_degenerate_cases() -> None:
    assert M.cohen_kappa(np.array([[7, 0], [0, 0]])) == 1.0  # one class, all right
    assert M.cohen_kappa(np.array([[3, 1], [1, 3]])) == pytest.approx(0.5)  # (.75-.5)/.5
    assert M.cohen_kappa(np.array([[0, 4], [4, 0]])) == pytest.approx(-1.0)  # (0-.5)/.5


def test_confusion_matrix_rejects_out_of_range_classes() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        M.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="target has 2 values but pred has 1"):
        M.confusion_matrix(np.array([0, 1]), np.array([0]), 3)


def test_ece_by_hand() -> None:
    # 5 bins of width 0.2. bin (0.8,1]: conf .95 ok, .90 wrong -> acc .5, mean conf .925
    # bin (0.4,0.6]: .55 ok, .58 ok -> acc 1, conf .565; bin (0.2,0.4]: .30 wrong -> acc 0, conf .3
    conf = np.array([0.95, 0.90, 0.55, 0.58, 0.30])
    correct = np.array([True, False, True, True, False])
    expected = 2 / 5 * 0.425 + 2 / 5 * 0.435 + 1 / 5 * 0.3  # 0.404
    assert M.expected_calibration_error(conf, correct, n_bins=5) == pytest.approx(expected)
    # perfectly calibrated: confidence 1.0 and always right
    assert M.expected_calibration_error(np.ones(4), np.ones(4, bool)) == pytest.approx(0.0)
