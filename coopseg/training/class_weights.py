"""Pixel class weights for the segmentation loss, estimated from the training masks.

With lesions at ~1-2 % of a fundus image, short CPU runs of *any* segmenter settle on
"all background" (lesion IoU 0) under the paper's plain cross-entropy (Eq. 2).
``train.seg_class_weighting`` counters that; a property of the loss, it is the same for
every segmentation method of an experiment (docs/method.md). ``none`` is the paper's.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import logging

from coopseg.config import IGNORE_LABEL

WEIGHTINGS = ("none", "inverse_sqrt_frequency", "median_frequency")


def estimate_class_frequencies(dataset: tf.data.Dataset, num_classes: int,
                               max_batches: int = 50) -> np.ndarray:
    """Fraction of valid (non-ignore) pixels per class over up to ``max_batches`` batches."""
    counts = np.zeros(num_classes, np.float64)
    for _, masks in dataset.take(max_batches):
        m = masks.numpy().ravel()
        m = m[(m != IGNORE_LABEL) & (m < num_classes)]
        counts += np.bincount(m, minlength=num_classes)[:num_classes]
    total = counts.sum()
    if total == 0:
        raise ValueError("no labelled pixels in the segmentation training data")
    return counts / total


def class_weights_from_frequencies(freqs: np.ndarray, method: str,
                                   max_weight: float = 50.0) -> np.ndarray:
    """Per-class loss weights, background-relative, capped at ``max_weight``.

    - ``inverse_sqrt_frequency``: w_c = sqrt(f_0 / f_c), background weight 1; milder
      than inverse frequency, which floods rare classes with false positives.
    - ``median_frequency``: w_c = median(f) / f_c (Eigen & Fergus 2015, SegNet).
    Classes never seen get ``max_weight``.
    """
    freqs = np.asarray(freqs, np.float64)
    if method == "none":
        return np.ones_like(freqs)
    seen = freqs > 0
    if method == "inverse_sqrt_frequency":
        w = np.where(seen, np.sqrt(freqs[0] / np.where(seen, freqs, 1.0)), max_weight)
    elif method == "median_frequency":
        w = np.where(seen, np.median(freqs[seen]) / np.where(seen, freqs, 1.0), max_weight)
    else:
        raise ValueError(f"unknown class weighting {method!r}; choose one of {WEIGHTINGS}")
    return np.minimum(w, max_weight)


def log_weights(class_names, freqs, weights) -> None:
    rows = ", ".join(f"{n} {100 * f:.3f}%→{w:.2f}" for n, f, w in zip(class_names, freqs, weights))
    logging.info("segmentation class frequency → loss weight: %s", rows)
