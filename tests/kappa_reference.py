"""A NumPy quadratic weighted kappa: the test oracle for the library's TFA-based QWK
(``coopseg.evaluation.metrics.ClassificationMetrics``), which is the one the library uses."""
import math
from typing import Iterable

import numpy as np

from coopseg.evaluation.metric_tables import confusion_matrix


def quadratic_weighted_kappa(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> float:
    """Cohen's kappa with quadratic weights (the Kaggle DR metric).

    kappa = 1 - sum(W * O) / sum(W * E), with W[i, j] = (i - j)^2, O the observed
    confusion matrix and E the outer product of the two raters' histograms scaled to
    the same total. Constant predictions against varied truth give 0 (chance level).
    When both raters use a single, identical class, E has no off-diagonal mass and
    kappa is undefined: nan (scikit-learn and TFA agree).
    """
    observed = confusion_matrix(y_true, y_pred, num_classes).astype(np.float64)
    total = observed.sum()
    if total == 0:
        raise ValueError("quadratic_weighted_kappa needs at least one sample")
    grades = np.arange(num_classes, dtype=np.float64)
    weights = (grades[:, None] - grades[None, :]) ** 2
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    chance_disagreement = float((weights * expected).sum())
    if chance_disagreement == 0:
        return math.nan
    return 1.0 - float((weights * observed).sum()) / chance_disagreement
