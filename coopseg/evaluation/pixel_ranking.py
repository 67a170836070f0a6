"""Per-lesion AUPR (the IDRiD challenge metric) over every validation pixel, streamed.

Tens of millions of pixels are too many to sort: ``PixelScoreHistogram`` keeps each
class's top-scoring pixels exactly and counts the rest in fine logit-spaced bins (with
each bin's score range, so a bin of tied scores is exact); ``Ranking`` derives AUPR,
PR curves and a proven bound on what binning can change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from coopseg.config import IGNORE_LABEL, ConfigError
from coopseg.models.losses import partial_annotation

# Bins are equal in logit(p) = log(p / (1 - p)), not in p: a lesion's pixels mostly score
# near 0 or near 1, where equal bins in p lumped millions of pixels into one threshold
# (on the demo model 10000 equal bins left a binning error bound of 0.45 for
# haemorrhages). The range covers every float32 probability: the smallest positive
# float32 is logit -103.3, the largest float32 below 1 is logit 16.6, so exact 0 and
# exact 1 (saturated softmax) each fall into an end bin of their own.
LOGIT_RANGE = (-104.0, 17.0)
DEFAULT_BINS = 65536
SPACINGS = ("logit", "linear")
# The highest-scoring pixels of each class are also kept exactly (score and label): the
# top of a ranking is where binning errs most (few pixels ranked before a bin, so its
# unknown inner order moves precision most), and there the AUPR is exact. Deeper bins
# sit behind at least this many pixels, which keeps their bound small. On the demo
# model the haemorrhage bound fell from 0.45 (bins alone) to 0 (every pixel exact).
DEFAULT_EXACT_TOP = 1 << 20


def score_bins(scores, num_bins: int, spacing: str = "logit"):
    """Bin index of each score (TensorFlow, float32), the one rule the histogram uses."""
    scores = tf.cast(scores, tf.float32)
    if spacing == "linear":
        position = scores * num_bins
    else:
        low, high = LOGIT_RANGE
        logit = tf.math.log(scores) - tf.math.log1p(-scores)
        logit = tf.clip_by_value(tf.where(tf.math.is_nan(logit), low, logit), low, high)
        position = (logit - low) * (num_bins / (high - low))
    return tf.clip_by_value(tf.cast(tf.floor(position), tf.int32), 0, num_bins - 1)


def bin_lower_edges(num_bins: int, spacing: str = "logit") -> np.ndarray:
    """Each bin's lowest score, in probability (increasing; bin 0 starts at 0)."""
    index = np.arange(num_bins, dtype=np.float64)
    if spacing == "linear":
        return index / num_bins
    low, high = LOGIT_RANGE
    edges = 1.0 / (1.0 + np.exp(-(low + index * (high - low) / num_bins)))
    edges[0] = 0.0
    return edges


class PixelScoreHistogram(tf.keras.metrics.Metric):
    """Streaming per-class histograms of pixel scores, split by positive/negative.

    For each foreground class c the softmax probability p_c of every valid pixel goes
    to one of ``B = num_bins`` bins (``score_bins``: equal in logit by default), counted
    apart for positive (label == c) and negative pixels, and each bin keeps the lowest and
    highest score it saw: a bin whose scores are all equal holds tied pixels, exactly one
    threshold, and adds nothing to ``binning_error_bound``. Memory is ``(C - 1) * B * 4``
    numbers whatever the set size.

    ``update_state(y_true, probabilities)``: ``y_true`` int ``[B, H, W]`` (or with a
    trailing 1), ``probabilities`` ``[B, H, W, num_classes]`` softmax scores. Labels
    outside ``[0, num_classes)`` (the 255 ignore border, anything else) are skipped.
    Works inside ``tf.function``; counts are float64 sums like ``SegmentationConfusion``
    (exact up to 2**53 pixels, sync-on-read under ``tf.distribute``). The score ranges
    are kept on one device only (a min and a max do not sum over replicas): under a
    multi-replica strategy ``ranges()`` is None and the bound treats every bin as untied.

    Classes 1..C-1 (every class but background) are histogrammed; ``counts()``
    returns them as ``[C - 1, num_bins, 2]`` (last axis: negatives, positives).
    """

    def __init__(self, num_classes: int, num_bins: int = DEFAULT_BINS,
                 ignore_label: int = IGNORE_LABEL, class_names: Optional[Sequence[str]] = None,
                 spacing: str = "logit", exact_top: int = DEFAULT_EXACT_TOP,
                 name: str = "pixel_score_histogram"):
        super().__init__(name=name, dtype=tf.float64)
        if num_classes < 2:
            raise ConfigError(f"PixelScoreHistogram needs num_classes >= 2, got {num_classes}")
        if num_bins < 1:
            raise ConfigError(f"PixelScoreHistogram needs num_bins >= 1, got {num_bins}")
        if spacing not in SPACINGS:
            raise ConfigError(f"PixelScoreHistogram spacing={spacing!r}; choose one of {SPACINGS}")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class_names for num_classes={num_classes}")
        if exact_top < 0:
            raise ConfigError(f"PixelScoreHistogram needs exact_top >= 0, got {exact_top}")
        self.num_classes = num_classes
        self.num_bins = num_bins
        self.spacing = spacing
        self.ignore_label = ignore_label
        self.class_names = tuple(class_names or (f"class_{i}" for i in range(num_classes)))
        self.histogram = self.add_weight("histogram", shape=((num_classes - 1) * num_bins * 2,),
                                         initializer="zeros", dtype=tf.float64)
        self.tracks_ranges = tf.distribute.get_strategy().num_replicas_in_sync == 1
        if self.tracks_ranges:
            size = ((num_classes - 1) * num_bins,)
            self.lowest = tf.Variable(tf.fill(size, np.inf), trainable=False, name="lowest",
                                      dtype=tf.float32)
            self.highest = tf.Variable(tf.fill(size, -np.inf), trainable=False,
                                       name="highest", dtype=tf.float32)
        # Kept on one device only, like the ranges (a top-k does not sum over replicas).
        self.exact_top = exact_top if self.tracks_ranges else 0
        if self.exact_top:
            shape = (num_classes - 1, self.exact_top)
            self.top_scores = tf.Variable(tf.fill(shape, -np.inf), trainable=False,
                                          name="top_scores", dtype=tf.float32)
            self.top_positive = tf.Variable(tf.zeros(shape, tf.int8), trainable=False,
                                            name="top_positive")

    def update_state(self, y_true, probabilities) -> None:
        """Add one batch's valid pixels to every foreground class's histogram."""
        y_true = tf.convert_to_tensor(y_true)
        if y_true.shape.rank == 4 and y_true.shape[-1] == 1:
            y_true = tf.squeeze(y_true, axis=-1)
        probabilities = tf.cast(tf.convert_to_tensor(probabilities), tf.float32)
        if probabilities.shape[-1] not in (None, self.num_classes):
            raise ValueError(f"probabilities have {probabilities.shape[-1]} channels; expected "
                             f"{self.num_classes}")
        tf.debugging.assert_equal(tf.shape(y_true), tf.shape(probabilities)[:-1],
                                  message="labels and probabilities differ in shape")
        foreground = self.num_classes - 1
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1, 1])
        scores = tf.reshape(probabilities, [-1, self.num_classes])[:, 1:]
        bins = score_bins(scores, self.num_bins, self.spacing)
        classes = tf.range(1, self.num_classes, dtype=tf.int32)[None, :]
        is_positive = tf.cast(tf.equal(labels, classes), tf.int32)
        slot = (classes - 1) * self.num_bins + bins                        # [pixels, C - 1]
        # A partial label is a negative of the classes its set annotates, and unknown
        # (not counted) for the others.
        is_partial, annotated = partial_annotation(labels[:, 0], self.num_classes)
        valid = (((labels >= 0) & (labels < self.num_classes))
                 | (is_partial[:, None] & annotated[:, 1:]))
        size = foreground * self.num_bins * 2
        # Invalid pixels go to one extra bin that is dropped (as in metrics._pair_counts).
        index = tf.where(valid, slot * 2 + is_positive, size)
        counts = tf.math.bincount(tf.reshape(index, [-1]), minlength=size + 1,
                                  maxlength=size + 1, dtype=tf.int64)
        self.histogram.assign_add(tf.cast(counts[:size], tf.float64))
        if self.tracks_ranges:
            slots = foreground * self.num_bins
            slot = tf.reshape(tf.where(valid, slot, slots), [-1])
            flat = tf.reshape(scores, [-1])
            lowest = tf.math.unsorted_segment_min(flat, slot, slots + 1)[:slots]
            highest = tf.math.unsorted_segment_max(flat, slot, slots + 1)[:slots]
            self.lowest.assign(tf.minimum(self.lowest, lowest))
            self.highest.assign(tf.maximum(self.highest, highest))
        if self.exact_top:
            # The k best of (kept, this batch) per class; invalid pixels score -inf.
            batch_scores = tf.transpose(tf.where(valid, scores, -np.inf))
            candidates = tf.concat([self.top_scores, batch_scores], axis=1)
            positives = tf.concat([self.top_positive,
                                   tf.transpose(tf.cast(is_positive, tf.int8))], axis=1)
            best, where = tf.math.top_k(candidates, k=self.exact_top, sorted=False)
            self.top_scores.assign(best)
            self.top_positive.assign(tf.gather(positives, where, batch_dims=1))

    def result(self) -> tf.Tensor:
        """The raw counts ``[C - 1, num_bins, 2]`` as a tensor."""
        return tf.reshape(tf.convert_to_tensor(self.histogram),
                          [self.num_classes - 1, self.num_bins, 2])

    def counts(self) -> np.ndarray:
        """``[C - 1, num_bins, 2]`` int64 counts (negatives, positives). Eager only."""
        return np.rint(self.result().numpy()).astype(np.int64)

    def class_counts(self, class_index: int) -> np.ndarray:
        """``[num_bins, 2]`` counts of one class (``class_index`` in 1..C-1)."""
        self._check_class(class_index)
        return self.counts()[class_index - 1]

    def ranges(self) -> Optional[np.ndarray]:
        """``[C - 1, num_bins, 2]`` lowest and highest score per bin (inf, -inf when
        empty); None when not tracked (multi-replica). Eager only."""
        if not self.tracks_ranges:
            return None
        return np.stack([self.lowest.numpy(), self.highest.numpy()], axis=-1).reshape(
            self.num_classes - 1, self.num_bins, 2)

    def class_ranges(self, class_index: int) -> Optional[np.ndarray]:
        """``[num_bins, 2]`` lowest and highest score per bin of one class, or None."""
        self._check_class(class_index)
        ranges = self.ranges()
        return None if ranges is None else ranges[class_index - 1]

    def class_ranking(self, class_index: int) -> "Ranking":
        """The ranking of one class's pixels (``Ranking``): its exactly kept top, then the
        bins holding the rest. Eager only."""
        self._check_class(class_index)
        counts, ranges = self.class_counts(class_index), self.class_ranges(class_index)
        edges = self.thresholds()
        if not self.exact_top:
            return Ranking.from_bins(counts, edges, ranges)
        scores = self.top_scores[class_index - 1].numpy()
        positive = self.top_positive[class_index - 1].numpy().astype(bool)
        kept = np.isfinite(scores)
        scores, positive = scores[kept], positive[kept]
        if scores.size == self.exact_top:
            # The buffer is full: pixels scoring its lowest value may also be in the bins;
            # keep only what is strictly above it, all of which the buffer holds.
            above = scores > scores.min()
            scores, positive = scores[above], positive[above]
        rest = counts.copy()
        bins = score_bins(scores, self.num_bins, self.spacing).numpy()
        np.subtract.at(rest, (bins, positive.astype(np.int64)), 1)
        return Ranking.from_exact_and_bins(scores, positive, rest, edges, ranges)

    def thresholds(self) -> np.ndarray:
        """Each bin's lowest possible score (``bin_lower_edges``)."""
        return bin_lower_edges(self.num_bins, self.spacing)

    def _check_class(self, class_index: int) -> None:
        if not 1 <= class_index < self.num_classes:
            raise ValueError(f"class_index must be in [1, {self.num_classes}), got {class_index}")

    def reset_state(self) -> None:
        self.histogram.assign(tf.zeros_like(self.histogram))
        if self.tracks_ranges:
            self.lowest.assign(tf.fill(tf.shape(self.lowest), np.inf))
            self.highest.assign(tf.fill(tf.shape(self.highest), -np.inf))
        if self.exact_top:
            self.top_scores.assign(tf.fill(tf.shape(self.top_scores), -np.inf))
            self.top_positive.assign(tf.zeros_like(self.top_positive))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "num_bins": self.num_bins, "ignore_label": self.ignore_label,
                "class_names": list(self.class_names), "spacing": self.spacing,
                "exact_top": self.exact_top}


# ----------------------------------------------------------------------------
# AUPR and PR curves from a ranking of threshold groups (NumPy).


@dataclass(frozen=True)
class Ranking:
    """Pixels in groups that share a threshold, highest scores first.

    ``counts`` ``[G, 2]`` (negatives, positives) per group, ``thresholds`` ``[G]`` each
    group's lowest possible score, ``exact`` ``[G]`` whether a group is one score (an
    exactly kept score, or a bin whose lowest and highest score are equal): only the
    other groups (bins of different scores) add to ``error_bound``.
    """

    counts: np.ndarray
    thresholds: np.ndarray
    exact: np.ndarray

    @classmethod
    def from_bins(cls, counts: np.ndarray, edges: Optional[np.ndarray] = None,
                  ranges: Optional[np.ndarray] = None) -> "Ranking":
        """The ranking a histogram ``[num_bins, 2]`` (bins ascending) gives; ``edges``
        each bin's lowest score (default: equal bins), ``ranges`` ``[num_bins, 2]``
        each bin's lowest and highest score seen (None: not known, no bin exact)."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[1] != 2:
            raise ValueError(f"histogram must be [num_bins, 2] (negatives, positives), "
                             f"got {counts.shape}")
        edges = bin_lower_edges(len(counts), "linear") if edges is None else np.asarray(edges)
        # High to low; an empty bin is no threshold (as a score nobody has).
        occupied = np.flatnonzero(counts.sum(axis=1) > 0)[::-1]
        exact = (np.zeros(len(occupied), bool) if ranges is None
                 else np.asarray(ranges)[occupied, 0] == np.asarray(ranges)[occupied, 1])
        return cls(counts[occupied], edges[occupied], exact)

    @classmethod
    def from_exact_and_bins(cls, scores: np.ndarray, positive: np.ndarray, rest: np.ndarray,
                            edges: np.ndarray, ranges: Optional[np.ndarray]) -> "Ranking":
        """Exactly known pixels (``scores``, ``positive``), all scoring above every pixel
        of the histogram ``rest``, then ``rest``'s bins."""
        order = np.argsort(-scores, kind="stable")
        scores, positive = scores[order], positive[order]
        # One group per distinct score: tied pixels are one threshold.
        starts = (np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]]) if scores.size
                  else np.zeros(0, np.int64))
        pos = (np.add.reduceat(positive.astype(np.int64), starts) if scores.size
               else np.zeros(0, np.int64))
        sizes = np.diff(np.r_[starts, scores.size])
        top = np.stack([sizes - pos, pos], axis=1).reshape(-1, 2)
        bins = cls.from_bins(rest, edges, ranges)
        return cls(np.concatenate([top, bins.counts]),
                   np.concatenate([scores[starts].astype(np.float64), bins.thresholds]),
                   np.concatenate([np.ones(len(starts), bool), bins.exact]))

    def _cumulative(self) -> Tuple[np.ndarray, np.ndarray]:
        return (np.cumsum(self.counts[:, 1]).astype(np.float64),
                np.cumsum(self.counts[:, 0]).astype(np.float64))

    def average_precision(self) -> float:
        """Step-wise AUPR ``sum_n (R_n - R_{n-1}) P_n``, one threshold per group; nan
        without positives."""
        tps, fps = self._cumulative()
        if tps.size == 0 or tps[-1] == 0:
            return math.nan
        recall_gain = np.diff(np.r_[0.0, tps]) / tps[-1]
        return float(np.sum(recall_gain * tps / (tps + fps)))

    def precision_recall_curve(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, thresholds) in ``metric_tables.precision_recall_curve``'s
        convention: thresholds increase, and precision/recall end with the point (1, 0).
        Recall is nan without positives."""
        tps, fps = self._cumulative()
        if tps.size == 0:
            return np.array([1.0]), np.array([0.0]), np.array([])
        precision = tps / (tps + fps)
        recall = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
        return (np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0],
                np.asarray(self.thresholds, np.float64)[::-1])

    def error_bound(self) -> float:
        """Upper bound on |this AUPR - AUPR of the unbinned scores|.

        Binning is the one deviation from an exact sort: the pixels of a bin become one
        threshold, as tied scores are in ``coopseg.evaluation.metric_tables``
        (precision is taken at the end of the bin), so this AUPR differs from the exact
        one only through the order inside a bin. Within a bin holding m pixels, the last
        of which is ranked N-th overall, precision moves by at most (m - 1) / N, so

            |AUPR_binned - AUPR_exact| <= sum over bins b of (positives_b / P) * (m_b - 1) / N_b.

        Exact groups (kept scores, bins of one score) add nothing. nan without positives
        (AUPR undefined); 0 when every group is exact or holds one pixel.
        """
        tps, fps = self._cumulative()
        if tps.size == 0 or tps[-1] == 0:
            return math.nan
        pixels = self.counts.sum(axis=1).astype(np.float64)
        pixels = np.where(self.exact, 1.0, pixels)
        return float(np.sum(self.counts[:, 1] / tps[-1] * (pixels - 1) / (tps + fps)))


def histogram_average_precision(counts: np.ndarray) -> float:
    """AUPR of a ``[num_bins, 2]`` histogram, one threshold per occupied bin.

    Equals ``metric_tables.average_precision`` on scores quantised to their bin; nan
    when the class has no positive pixel.
    """
    return Ranking.from_bins(counts).average_precision()


def histogram_precision_recall_curve(
        counts: np.ndarray, edges: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PR curve of a ``[num_bins, 2]`` histogram (``Ranking.precision_recall_curve``;
    thresholds are each bin's lower edge, ``edges``, default ``bin / num_bins``)."""
    return Ranking.from_bins(counts, edges).precision_recall_curve()


def binning_error_bound(counts: np.ndarray, ranges: Optional[np.ndarray] = None) -> float:
    """``Ranking.error_bound`` of a ``[num_bins, 2]`` histogram; a bin whose lowest and
    highest score (``ranges``) are equal holds tied pixels and adds nothing."""
    return Ranking.from_bins(counts, None, ranges).error_bound()


def quantise(scores: np.ndarray, num_bins: int = DEFAULT_BINS,
             spacing: str = "logit") -> np.ndarray:
    """Scores replaced by their bin's lower edge, as the histogram sees them (binned by
    ``score_bins``, the histogram's own rule)."""
    bins = score_bins(np.asarray(scores, dtype=np.float32), num_bins, spacing).numpy()
    return bin_lower_edges(num_bins, spacing)[bins]
