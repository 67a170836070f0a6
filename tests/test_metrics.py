"""Tests for coopseg.evaluation.metrics (streaming, TF) and coopseg.evaluation.metric_tables (offline, NumPy).

Expected values are worked out by hand in the comments and written as fractions.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction as F

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.evaluation.metric_tables import (average_precision, confusion_matrix, format_table,
                                              grade_at_least_probability, iou_dice_from_confusion,
                                              precision_recall_curve, roc_auc, roc_curve,
                                              sensitivity_specificity, to_jsonable)
from coopseg.evaluation.metrics import ClassificationMetrics, SegmentationConfusion
from tests.kappa_reference import quadratic_weighted_kappa

X = 255  # ignore label

# Two 3x3 images, 4 classes; class 3 appears in neither truth nor prediction.
SEG_TRUE = np.array([[[0, 0, 1],
                      [0, 1, 1],
                      [X, 2, 2]],
                     [[2, 2, X],
                      [0, 0, 0],
                      [1, X, 2]]], dtype=np.uint8)
SEG_PRED = np.array([[[0, 1, 1],
                      [0, 1, 2],
                      [1, 2, 0]],
                     [[2, 0, 2],
                      [0, 0, 0],
                      [1, 0, 2]]], dtype=np.int32)
# Pairs (true, pred) over the 15 labelled pixels: (0,0) x5, (0,1) x1, (1,1) x3,
# (1,2) x1, (2,2) x3, (2,0) x2. The three 255 pixels are dropped.
SEG_CM = np.array([[5, 1, 0, 0],
                   [0, 3, 1, 0],
                   [2, 0, 3, 0],
                   [0, 0, 0, 0]])
# Row sums (true) 6, 4, 5, 0; column sums (pred) 7, 4, 4, 0.
SEG_IOU = [F(5, 6 + 7 - 5), F(3, 4 + 4 - 3), F(3, 5 + 4 - 3)]      # 5/8, 3/5, 1/2
SEG_DICE = [F(2 * 5, 6 + 7), F(2 * 3, 4 + 4), F(2 * 3, 5 + 4)]     # 10/13, 3/4, 2/3
SEG_MIOU = sum(SEG_IOU) / 3                                        # 23/40 (class 3 excluded)
SEG_MIOU_NO_BG = (SEG_IOU[1] + SEG_IOU[2]) / 2                     # 11/20
SEG_PIXEL_ACC = F(5 + 3 + 3, 15)


def _check_hand_segmentation(result: dict) -> None:
    assert result["confusion_matrix"] == SEG_CM.tolist()
    assert list(result["iou"].values())[:3] == pytest.approx([float(v) for v in SEG_IOU])
    assert list(result["dice"].values())[:3] == pytest.approx([float(v) for v in SEG_DICE])
    assert result["iou"]["class_3"] is None and result["dice"]["class_3"] is None
    assert result["miou"] == pytest.approx(float(F(23, 40))) == pytest.approx(float(SEG_MIOU))
    assert result["miou_no_background"] == pytest.approx(float(SEG_MIOU_NO_BG))
    assert result["mean_dice"] == pytest.approx(float(sum(SEG_DICE) / 3))
    assert result["mean_dice_no_background"] == pytest.approx(float((SEG_DICE[1] + SEG_DICE[2]) / 2))
    assert result["pixel_accuracy"] == pytest.approx(float(SEG_PIXEL_ACC))


def test_segmentation_confusion_hand_case():
    metric = SegmentationConfusion(num_classes=4)
    metric.update_state(SEG_TRUE, SEG_PRED)
    result = metric.result_dict()
    _check_hand_segmentation(result)
    json.dumps(result)  # plain Python, None for the undefined class


def test_segmentation_accepts_logits_and_channel_axis_labels():
    metric = SegmentationConfusion(num_classes=4, class_names=["bg", "a", "b", "c"])
    logits = np.eye(4, dtype=np.float32)[SEG_PRED] * 3.0 - 1.0  # argmax = SEG_PRED
    metric.update_state(SEG_TRUE[..., None], logits)
    result = metric.result_dict()
    assert result["confusion_matrix"] == SEG_CM.tolist()
    assert list(result["iou"]) == ["bg", "a", "b", "c"]


def test_numpy_iou_dice_matches_hand_values_and_streaming():
    report = iou_dice_from_confusion(SEG_CM)
    assert report["iou"][:3] == pytest.approx([float(v) for v in SEG_IOU])
    assert math.isnan(report["iou"][3]) and math.isnan(report["dice"][3])
    assert report["miou"] == pytest.approx(float(SEG_MIOU))
    assert report["miou_no_background"] == pytest.approx(float(SEG_MIOU_NO_BG))
    metric = SegmentationConfusion(num_classes=4)
    metric.update_state(SEG_TRUE, SEG_PRED)
    streaming = metric.result_dict()
    for key in ("miou", "miou_no_background", "mean_dice", "mean_dice_no_background", "pixel_accuracy"):
        assert streaming[key] == pytest.approx(report[key])


def test_class_present_only_in_prediction_counts_as_zero_iou():
    # Truth all class 0; one pixel predicted as class 2 -> IoU_2 = 0 (union 1), class 1 absent.
    cm = np.array([[3, 0, 1], [0, 0, 0], [0, 0, 0]])
    report = iou_dice_from_confusion(cm)
    assert report["iou"][0] == pytest.approx(3 / 4) and report["iou"][2] == 0.0
    assert math.isnan(report["iou"][1])
    assert report["miou"] == pytest.approx((3 / 4 + 0) / 2)
    assert report["miou_no_background"] == 0.0


def test_segmentation_streaming_two_batches_equal_one_and_reset():
    split = SegmentationConfusion(num_classes=4)
    split.update_state(SEG_TRUE[:1], SEG_PRED[:1])
    split.update_state(SEG_TRUE[1:], SEG_PRED[1:])
    whole = SegmentationConfusion(num_classes=4)
    whole.update_state(SEG_TRUE, SEG_PRED)
    assert split.result_dict() == whole.result_dict()
    split.reset_state()
    empty = split.result_dict()
    assert empty["confusion_matrix"] == np.zeros((4, 4), int).tolist()
    assert empty["miou"] is None and empty["pixel_accuracy"] is None


def test_segmentation_inside_tf_function():
    metric = SegmentationConfusion(num_classes=4)

    @tf.function
    def update(y_true, y_pred):
        metric.update_state(y_true, y_pred)

    @tf.function
    def reset():
        metric.reset_state()

    update(tf.constant(SEG_TRUE[:1]), tf.constant(SEG_PRED[:1]))
    update(tf.constant(SEG_TRUE[1:]), tf.constant(SEG_PRED[1:]))
    _check_hand_segmentation(metric.result_dict())
    reset()
    assert metric.result_dict()["confusion_matrix"] == np.zeros((4, 4), int).tolist()


def test_segmentation_rejects_bad_input():
    metric = SegmentationConfusion(num_classes=4)
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        metric.update_state(SEG_TRUE, np.full_like(SEG_PRED, 4))
    with pytest.raises(tf.errors.InvalidArgumentError, match="shape"):
        metric.update_state(SEG_TRUE, SEG_PRED[:, :2])
    with pytest.raises(ValueError, match="channels"):
        metric.update_state(SEG_TRUE, np.zeros((2, 3, 3, 5), np.float32))
    with pytest.raises(ConfigError, match="ignore_label"):
        SegmentationConfusion(num_classes=4, ignore_label=2)


# Six samples over 5 grades (probabilities, no ties among the top two):
#   true 0: argmax 0         top1 yes, top2 yes, binary 0/0 yes
#   true 1: argmax 0, 2nd 1  top1 no,  top2 yes, binary 1/0 no
#   true 2: argmax 3, 2nd 2  top1 no,  top2 yes, binary 1/1 yes
#   true 3: argmax 1, 2nd 2  top1 no,  top2 no,  binary 1/1 yes
#   true 4: argmax 4         top1 yes, top2 yes, binary 1/1 yes
#   true 2: argmax 0, 2nd 2  top1 no,  top2 yes, binary 1/0 no
CLF_TRUE = np.array([0, 1, 2, 3, 4, 2])
CLF_PROBS = np.array([[0.60, 0.30, 0.05, 0.03, 0.02],
                      [0.50, 0.40, 0.10, 0.00, 0.00],
                      [0.10, 0.20, 0.30, 0.40, 0.00],
                      [0.10, 0.60, 0.20, 0.05, 0.05],
                      [0.05, 0.05, 0.10, 0.20, 0.60],
                      [0.70, 0.05, 0.15, 0.05, 0.05]], dtype=np.float32)


@pytest.mark.parametrize("as_logits", [False, True])
def test_classification_hand_case(as_logits):
    scores = np.log(CLF_PROBS + 1e-6) if as_logits else CLF_PROBS
    metric = ClassificationMetrics(num_grades=5)
    metric.update_state(CLF_TRUE, scores)
    result = metric.result_dict()
    assert result["count"] == 6
    assert result["top1_accuracy"] == pytest.approx(float(F(2, 6)))
    assert result["top2_accuracy"] == pytest.approx(float(F(5, 6)))
    assert result["binary_accuracy"] == pytest.approx(float(F(4, 6)))
    expected_cm = np.zeros((5, 5), int)
    for true, pred in [(0, 0), (1, 0), (2, 3), (3, 1), (4, 4), (2, 0)]:
        expected_cm[true, pred] += 1
    assert result["confusion_matrix"] == expected_cm.tolist()
    assert result["quadratic_kappa"] == pytest.approx(
        quadratic_weighted_kappa(CLF_TRUE, CLF_PROBS.argmax(1), 5), abs=1e-6)
    json.dumps(result)


def test_classification_streaming_tf_function_and_reset():
    metric = ClassificationMetrics()

    @tf.function
    def update(y_true, scores):
        metric.update_state(y_true, scores)

    update(tf.constant(CLF_TRUE[:4]), tf.constant(CLF_PROBS[:4]))
    update(tf.constant(CLF_TRUE[4:]), tf.constant(CLF_PROBS[4:]))
    whole = ClassificationMetrics()
    whole.update_state(CLF_TRUE, CLF_PROBS)
    streamed, at_once = metric.result_dict(), whole.result_dict()
    assert streamed["confusion_matrix"] == at_once["confusion_matrix"]
    for key in ("count", "top1_accuracy", "top2_accuracy", "binary_accuracy", "quadratic_kappa"):
        assert streamed[key] == pytest.approx(at_once[key]), key
    metric.reset_state()
    empty = metric.result_dict()
    assert empty["count"] == 0 and empty["top1_accuracy"] is None and empty["quadratic_kappa"] is None
    metric.update_state(CLF_TRUE[:1], CLF_PROBS[:1])  # the kappa matrix was reset too
    assert metric.result_dict()["confusion_matrix"][0][0] == 1


def test_classification_rejects_bad_grades():
    metric = ClassificationMetrics()
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_grades"):
        metric.update_state([5], np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="scores"):
        metric.update_state([1], np.ones((1, 4), np.float32))


def _tfa_kappa(y_true, y_pred, num_grades):
    metric = ClassificationMetrics(num_grades=num_grades)
    metric.update_state(np.asarray(y_true), np.eye(num_grades, dtype=np.float32)[np.asarray(y_pred)])
    return metric.result_dict()["quadratic_kappa"]


def test_kappa_hand_3x3_example():
    # true [0,1,2,2], pred [0,2,2,1]. O = [[1,0,0],[0,0,1],[0,1,1]], W = (i-j)^2.
    # sum W*O = 1 + 1 = 2. Histograms (1,1,2) and (1,1,2), n = 4:
    # sum W*E = (1/4) * (1*1*1 + 4*1*2 + 1*1*1 + 1*1*2 + 4*2*1 + 1*2*1) = 22/4.
    # kappa = 1 - 2 / (22/4) = 7/11.
    y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 1]
    assert quadratic_weighted_kappa(y_true, y_pred, 3) == pytest.approx(float(F(7, 11)))
    assert _tfa_kappa(y_true, y_pred, 3) == pytest.approx(float(F(7, 11)), abs=1e-6)


def test_kappa_perfect_constant_and_degenerate():
    grades = [0, 1, 2, 3, 4, 4, 2]
    assert quadratic_weighted_kappa(grades, grades, 5) == pytest.approx(1.0)
    assert _tfa_kappa(grades, grades, 5) == pytest.approx(1.0)
    constant = [2] * len(grades)
    assert quadratic_weighted_kappa(grades, constant, 5) == pytest.approx(0.0)
    assert _tfa_kappa(grades, constant, 5) == pytest.approx(0.0, abs=1e-6)
    # Both raters constant on the same grade: no chance disagreement, kappa undefined.
    assert math.isnan(quadratic_weighted_kappa([1, 1], [1, 1], 5))
    assert _tfa_kappa([1, 1], [1, 1], 5) is None


@pytest.mark.parametrize("seed", range(4))
def test_tfa_kappa_equals_numpy_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 200))
    y_true = rng.integers(0, 5, n)
    # Correlated predictions so kappa is far from 0 in some cases.
    y_pred = np.clip(y_true + rng.integers(-seed, seed + 1, n), 0, 4)
    assert _tfa_kappa(y_true, y_pred, 5) == pytest.approx(quadratic_weighted_kappa(y_true, y_pred, 5),
                                                          abs=1e-5)


def test_confusion_matrix_and_kappa_reject_out_of_range():
    assert confusion_matrix([0, 1, 1], [1, 1, 0], 2).tolist() == [[0, 1], [1, 1]]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        quadratic_weighted_kappa([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="equal length"):
        confusion_matrix([0, 1], [0], 2)


def test_ranking_metrics_perfect_reversed_and_ties():
    scores = [0.9, 0.8, 0.3, 0.1]
    assert average_precision([1, 1, 0, 0], scores) == 1.0
    assert roc_auc([1, 1, 0, 0], scores) == 1.0
    # Reversed: positives ranked 3rd and 4th. P at R=1/2 is 1/3, at R=1 is 2/4.
    assert average_precision([0, 0, 1, 1], scores) == pytest.approx(float(F(1, 2) * F(1, 3) + F(1, 2) * F(1, 2)))
    assert roc_auc([0, 0, 1, 1], scores) == 0.0
    # All tied: one threshold, precision 1/2 at recall 1; AUC 1/2 (tied pairs count half).
    assert average_precision([1, 0, 1, 0], [0.5] * 4) == pytest.approx(0.5)
    assert roc_auc([1, 0, 1, 0], [0.5] * 4) == pytest.approx(0.5)


def test_ranking_metrics_mixed_case_with_tie():
    # Scores high to low: .9 (+), .8 (-), {.7 (+), .7 (-)} tied, .2 (+). Three positives.
    # Thresholds: R = 1/3, 1/3, 2/3, 1 with P = 1, 1/2, 2/4, 3/5.
    # AP = 1/3*1 + 0 + 1/3*1/2 + 1/3*3/5 = 7/10.
    # AUC: of 3*2 pairs, + .9 beats both negatives (2), + .7 ties the .7 negative (1/2): 5/12.
    y, s = [1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.7, 0.2]
    assert average_precision(y, s) == pytest.approx(float(F(7, 10)))
    assert roc_auc(y, s) == pytest.approx(float(F(5, 12)))
    precision, recall, thresholds = precision_recall_curve(y, s)
    assert thresholds.tolist() == [0.2, 0.7, 0.8, 0.9]
    assert precision == pytest.approx([3 / 5, 1 / 2, 1 / 2, 1.0, 1.0])
    assert recall == pytest.approx([1.0, 2 / 3, 1 / 3, 1 / 3, 0.0])
    fpr, tpr, roc_thresholds = roc_curve(y, s)
    assert fpr == pytest.approx([0, 0, 1 / 2, 1, 1]) and tpr == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert roc_thresholds[0] == np.inf


def test_ranking_metrics_match_brute_force_definitions():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 60)
    s = rng.integers(0, 10, 60) / 10.0  # many ties
    pos, neg = s[y == 1], s[y == 0]
    mann_whitney = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(y, s) == pytest.approx(mann_whitney)
    ap, previous_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):  # predict positive when score >= t
        predicted = s >= t
        recall = (predicted & (y == 1)).sum() / (y == 1).sum()
        ap += (recall - previous_recall) * (predicted & (y == 1)).sum() / predicted.sum()
        previous_recall = recall
    assert average_precision(y, s) == pytest.approx(ap)


def test_ranking_metrics_undefined_and_invalid():
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        average_precision([0, 1], [0.1, np.nan])


def test_sensitivity_specificity_and_referable_score():
    # Positives 3 (2 found), negatives 2 (1 correctly rejected).
    assert sensitivity_specificity([1, 1, 1, 0, 0], [1, 0, 1, 0, 1]) == pytest.approx((2 / 3, 1 / 2))
    sensitivity, specificity = sensitivity_specificity([0, 0], [0, 1])
    assert math.isnan(sensitivity) and specificity == 0.5
    probs = np.array([[0.4, 0.3, 0.2, 0.1, 0.0]])
    assert grade_at_least_probability(probs, 1) == pytest.approx([0.6])
    assert grade_at_least_probability(probs, 2) == pytest.approx([0.3])


def test_to_jsonable_and_format_table():
    assert to_jsonable({"a": np.float32(0.5), "b": [np.nan, np.int64(3)], "c": np.arange(2)}) == {
        "a": 0.5, "b": [None, 3], "c": [0, 1]}
    table = format_table([{"model": "jointseg", "miou": 0.51234, "n": 10},
                          {"model": "fcn8s", "miou": float("nan"), "n": 7}],
                         ["model", "miou", "n"])
    assert table.splitlines() == ["model       miou   n",
                                  "--------  ------  --",
                                  "jointseg  0.5123  10",
                                  "fcn8s          -   7"]
