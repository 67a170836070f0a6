"""Image-level multi-label metrics: how well DecoupledNet's stage 1 names the classes.

DecoupledNet segments only the classes whose sigmoid score passes
``decoupled.score_threshold`` (Hong et al. 2015, Sec. 3.3), so its mIoU is bounded by
the classifier; these numbers (AP, mAP, precision/recall at the threshold) make that
visible next to the segmentation table.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from coopseg.config import ConfigError


def average_precision(labels: np.ndarray, scores: np.ndarray) -> Optional[float]:
    """Non-interpolated AP of one class; None without positives.

    The mean of the precision at the rank of each positive, as scikit-learn's
    ``average_precision_score``.

    Tied scores are ranked as one block (every tied item counts as retrieved together),
    so the value does not depend on the input order.
    """
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    positives = int(labels.sum())
    if positives == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Ends of runs of equal scores: precision is evaluated there only.
    ends = np.r_[np.nonzero(np.diff(sorted_scores))[0], len(sorted_scores) - 1]
    true_positives = np.cumsum(sorted_labels)[ends]
    retrieved = ends + 1
    new_positives = np.diff(np.r_[0, true_positives])
    return float(np.sum(new_positives * true_positives / retrieved) / positives)


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return numerator / denominator if denominator else None


class MultiLabelMetrics:
    """Accumulates (multi-hot labels, sigmoid scores) batches; ``result_dict`` as JSON types.

    Validation sets are small (hundreds of images), so scores are gathered in NumPy and
    ranked once at the end.
    """

    def __init__(self, class_names: Sequence[str], threshold: float = 0.5):
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"score threshold must be in [0, 1], got {threshold}")
        self.class_names = tuple(class_names)
        self.threshold = float(threshold)
        self._labels: List[np.ndarray] = []
        self._scores: List[np.ndarray] = []

    def update_state(self, labels, scores) -> None:
        labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
        if labels.shape != scores.shape or labels.shape[-1:] != (len(self.class_names),):
            raise ValueError(f"labels {labels.shape} and scores {scores.shape} must both be "
                             f"[batch, {len(self.class_names)}]")
        self._labels.append(labels.astype(bool))
        self._scores.append(scores)

    def reset_state(self) -> None:
        self._labels, self._scores = [], []

    def result_dict(self) -> Dict[str, object]:
        """mAP, per-class AP, and precision/recall/F1 and images passing at the threshold.

        mAP is the mean over the classes with at least one positive image (the usual
        VOC-classification summary; a class without positives has no defined AP).
        Precision, recall and F1 are micro, over (image, class) pairs;
        ``images_passing_threshold`` is the fraction of images with at least one class
        at or above the threshold (the others get an all-background map).
        """
        n = len(self.class_names)
        labels = np.concatenate(self._labels) if self._labels else np.zeros((0, n), bool)
        scores = np.concatenate(self._scores) if self._scores else np.zeros((0, n))
        per_class = {name: average_precision(labels[:, i], scores[:, i])
                     for i, name in enumerate(self.class_names)}
        defined = [ap for ap in per_class.values() if ap is not None]
        passed = scores >= self.threshold
        tp = float(np.sum(passed & labels))
        precision = _ratio(tp, float(passed.sum()))
        recall = _ratio(tp, float(labels.sum()))
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall > 0
              else None)
        return {"map": sum(defined) / len(defined) if defined else None,
                "per_class_ap": per_class,
                "precision": precision, "recall": recall, "f1": f1,
                "images_passing_threshold": _ratio(float(passed.any(axis=1).sum()),
                                                   float(len(labels))),
                "score_threshold": self.threshold,
                "num_images": int(len(labels))}

