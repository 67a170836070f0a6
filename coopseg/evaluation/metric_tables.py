"""Offline NumPy metrics for evaluation reports, and JSON/table output.

They work on arrays gathered after a run (no TensorFlow, no scikit-learn), follow what the
papers and scikit-learn report (an undefined value is ``nan``, and means skip it), and are
the reference the streaming metrics in ``coopseg.evaluation.metrics`` are checked against.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

# ----------------------------------------------------------------------------
# Segmentation: IoU and Dice from an accumulated confusion matrix.


def iou_dice_from_confusion(cm: np.ndarray) -> dict:
    """Per-class IoU/Dice, their means with and without background, pixel accuracy.

    ``cm[i, j]`` counts pixels of true class i predicted as j; class 0 is background.
    A class with no true and no predicted pixel (union 0) has IoU = Dice = nan and is
    left out of every mean; a class present in only one of the two has IoU 0 and
    counts. Returns plain Python floats and lists (nan where undefined).
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 2:
        raise ValueError(f"confusion matrix must be square [C, C] with C >= 2, got {cm.shape}")
    true_pixels = cm.sum(axis=1)
    pred_pixels = cm.sum(axis=0)
    hits = np.diag(cm)
    union = true_pixels + pred_pixels - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, hits / union, np.nan)
        dice = np.where(union > 0, 2 * hits / (true_pixels + pred_pixels), np.nan)
    total = cm.sum()
    return {
        "iou": iou.tolist(),
        "dice": dice.tolist(),
        "miou": mean_defined(iou),
        "miou_no_background": mean_defined(iou[1:]),
        "mean_dice": mean_defined(dice),
        "mean_dice_no_background": mean_defined(dice[1:]),
        "pixel_accuracy": float(hits.sum() / total) if total > 0 else math.nan,
    }


def mean_defined(values) -> float:
    """Mean of the defined (non-nan) values; nan when there is none."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


# ----------------------------------------------------------------------------
# Classification: confusion matrix, quadratic weighted kappa, referable-DR scores.


def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes]`` (int64), rows = true, cols = predicted."""
    y_true, y_pred = _paired_1d(y_true, y_pred, "y_true", "y_pred")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes
                            or not np.all(values == np.round(values))):
            raise ValueError(f"{name} must hold integer classes in [0, {num_classes})")
    index = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


# Referable diabetic retinopathy: moderate non-proliferative or worse (grade >= 2).
REFERABLE_MIN_GRADE = 2


def grade_at_least_probability(probabilities: np.ndarray, min_grade: int) -> np.ndarray:
    """P(grade >= min_grade) per row of softmax probabilities ``[N, num_grades]``.

    The score for ranking metrics of a binary DR task: ``min_grade=1`` is "any DR"
    (1 - p(0)), ``min_grade=2`` is referable DR (moderate or worse).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or not 1 <= min_grade < probabilities.shape[1]:
        raise ValueError(f"need probabilities [N, G] and 1 <= min_grade < G; got "
                         f"shape {probabilities.shape}, min_grade={min_grade}")
    return probabilities[:, min_grade:].sum(axis=1)


def sensitivity_specificity(y_true_binary: Iterable[int], y_pred_binary: Iterable[int]) -> Tuple[float, float]:
    """(TP / (TP + FN), TN / (TN + FP)); nan when there is no positive / no negative."""
    truth = _binary(y_true_binary, "y_true_binary")
    pred = _binary(y_pred_binary, "y_pred_binary")
    truth, pred = _paired_1d(truth, pred, "y_true_binary", "y_pred_binary")
    positives, negatives = truth.sum(), (~truth).sum()
    sensitivity = (truth & pred).sum() / positives if positives else math.nan
    specificity = (~truth & ~pred).sum() / negatives if negatives else math.nan
    return float(sensitivity), float(specificity)


# ----------------------------------------------------------------------------
# Ranking metrics: precision-recall (AUPR, the IDRiD lesion metric) and ROC.


def _threshold_counts(y_true_binary, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (true positives, false positives) at each distinct score, high to low.

    Tied scores are one threshold, so every ranking curve and area built on these counts
    neither rewards nor punishes ties for the order of the input.
    """
    truth = _binary(y_true_binary, "y_true_binary")
    scores = np.asarray(scores, dtype=np.float64)
    truth, scores = _paired_1d(truth, scores, "y_true_binary", "scores")
    if truth.size == 0:
        raise ValueError("ranking metrics need at least one sample")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (found nan or inf)")
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    # The last index of each run of equal scores: a tie is one threshold.
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_positives = np.cumsum(truth)[last_of_tie].astype(np.float64)
    false_positives = (last_of_tie + 1) - true_positives
    return true_positives, false_positives, scores[last_of_tie]


def precision_recall_curve(y_true_binary, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) as scikit-learn >= 1.3 returns them.

    Thresholds increase; precision and recall have one more entry, the end point
    (precision 1, recall 0). Recall is nan-free only when there is a positive.
    """
    tps, fps, thresholds = _threshold_counts(y_true_binary, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(y_true_binary, scores) -> float:
    """Area under the precision-recall curve, step-wise: sum_n (R_n - R_{n-1}) P_n.

    Same as scikit-learn's ``average_precision_score`` (no interpolation). nan when
    there is no positive sample (recall undefined).
    """
    tps, fps, _ = _threshold_counts(y_true_binary, scores)
    if tps[-1] == 0:
        return math.nan
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    recall_gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_gain * precision))


def roc_curve(y_true_binary, scores) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds), thresholds decreasing.

    Starts at (0, 0) with threshold +inf; every distinct score is kept (no point
    dropping). A rate is nan when its class is absent.
    """
    tps, fps, thresholds = _threshold_counts(y_true_binary, scores)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def roc_auc(y_true_binary, scores) -> float:
    """Area under the ROC curve by the trapezoid rule.

    Tied scores form one diagonal step, so a tied (positive, negative) pair counts
    1/2 — the Mann-Whitney U statistic. nan without both classes.
    """
    fpr, tpr, _ = roc_curve(y_true_binary, scores)
    if np.isnan(fpr[-1]) or np.isnan(tpr[-1]):
        return math.nan
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


# ----------------------------------------------------------------------------
# Output: JSON-safe values and a text table for the CLI.


def to_jsonable(value: Any) -> Any:
    """Python types for ``json.dump``: numpy scalars/arrays unwrapped, nan/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def format_metric(value: Any, digits: int = 4) -> str:
    """One metric for people: ``undefined`` for None/nan, floats to ``digits`` places."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "undefined"
    return f"{float(value):.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                 float_format: str = "{:.4f}") -> str:
    """A plain aligned text table: header, rule, one line per row.

    Numbers are right-aligned, text left-aligned; missing, None and nan print "-".
    """
    cells: List[List[str]] = [[_cell(row.get(col), float_format) for col in columns] for row in rows]
    numeric = [bool(rows) and all(_is_number(row.get(col)) or row.get(col) is None for row in rows)
               for col in columns]
    widths = [max([len(col)] + [len(line[i]) for line in cells]) for i, col in enumerate(columns)]

    def render(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    lines = [render(list(columns)), "  ".join("-" * w for w in widths)]
    lines += [render(line) for line in cells]
    return "\n".join(lines)


def _cell(value: Any, float_format: str) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)):
        return float_format.format(float(value))
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------
# Input checks shared by the functions above.


def _paired_1d(a, b, name_a: str, name_b: str) -> Tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must be 1-D of equal length, got "
                         f"shapes {a.shape} and {b.shape}")
    return a, b


def _binary(values, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size and not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{name} must hold only 0/1 (or booleans)")
    return values.astype(bool)
