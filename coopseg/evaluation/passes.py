"""The one evaluation path: a pass over the masks and a pass over the grades.

Training-time validation, ``coopseg-evaluate`` (``evaluate.evaluate_system``) and the
full report (``report.build_report``) run these same passes, so their mIoU, top-1,
QWK... cannot drift apart. ``ReportOptions`` add what only the report needs.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from coopseg.config import IGNORE_LABEL, ConfigError
from coopseg.evaluation import pixel_ranking as pr
from coopseg.evaluation.metrics import ClassificationMetrics, SegmentationConfusion
from coopseg.evaluation.multilabel_metrics import MultiLabelMetrics
from coopseg.models.sliding_window import model_input_side
from coopseg.utils.progress import ProgressBar


@dataclass
class ReportOptions:
    """Settings of a report (the CLI flags)."""
    referable_threshold: float = 0.5   # referable DR predicted when p(grade >= 2) >= this
    aupr_bins: int = pr.DEFAULT_BINS   # pixel-score bins per class for AUPR
    grid_images: int = 4               # k worst and k best segmentations shown
    max_batches: int = 0               # 0 = the whole validation sets
    curve_points: int = 200            # most points per curve stored in metrics.json

    def validate(self) -> "ReportOptions":
        if not 0.0 <= self.referable_threshold <= 1.0:
            raise ConfigError(f"--referable_threshold must be in [0, 1], got "
                              f"{self.referable_threshold}")
        if self.aupr_bins < 1:
            raise ConfigError(f"--aupr_bins must be >= 1, got {self.aupr_bins}")
        if self.grid_images < 0:
            raise ConfigError(f"--grid_images must be >= 0, got {self.grid_images}")
        if self.curve_points < 2:
            raise ConfigError(f"curve_points must be >= 2, got {self.curve_points}")
        return self


@dataclass
class Thumbnail:
    score: float
    index: int
    image: np.ndarray   # uint8 RGB
    truth: np.ndarray   # int class map (ignore label kept)
    prediction: np.ndarray


class ExtremeImages:
    """The k lowest- and k highest-scoring images seen, in bounded memory.

    Both ends use one total order, (score, index), so with at least 2k scored images
    the two sets are disjoint; with fewer, ``worst_and_best`` splits them in half.
    """

    def __init__(self, k: int):
        self.k = k
        self._best: List[Tuple[Tuple[float, int], Thumbnail]] = []    # min-heap: k largest
        self._worst: List[Tuple[Tuple[float, int], Thumbnail]] = []   # min-heap of negated keys

    def wants(self, score: float, index: int) -> bool:
        """Whether an image with this score would be kept (so its pixels are needed)."""
        if self.k == 0:
            return False
        key = (score, index)
        return (len(self._best) < self.k or key > self._best[0][0]
                or len(self._worst) < self.k or (-score, -index) > self._worst[0][0])

    def add(self, thumb: Thumbnail) -> None:
        if self.k == 0:
            return
        for heap, key in ((self._best, (thumb.score, thumb.index)),
                          (self._worst, (-thumb.score, -thumb.index))):
            if len(heap) < self.k:
                heapq.heappush(heap, (key, thumb))
            elif key > heap[0][0]:
                heapq.heapreplace(heap, (key, thumb))

    def worst_and_best(self) -> Tuple[List[Thumbnail], List[Thumbnail]]:
        """(worst first, best first), disjoint."""
        kept = {t.index: t for _, t in self._best + self._worst}
        ranked = sorted(kept.values(), key=lambda t: (t.score, t.index))
        n_worst = min(self.k, (len(ranked) + 1) // 2)
        return ranked[:n_worst], ranked[n_worst:][::-1][:self.k]


def display_uint8(image: np.ndarray) -> np.ndarray:
    """A standardised float image as uint8 RGB, min-max rescaled (like
    ``visualize.to_display``)."""
    image = np.asarray(image, np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.clip(np.round((image - lo) / max(hi - lo, 1e-6) * 255), 0, 255).astype(np.uint8)


def per_image_dice_terms(masks: tf.Tensor, predictions: tf.Tensor,
                         num_classes: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Per image, over valid pixels: (2 * |pred == truth, truth > 0|, |pred > 0| + |truth > 0|).

    Their ratio is the image's lesion Dice (every foreground class at once, a pixel
    counting only when the class matches); undefined when the denominator is 0.
    """
    masks = tf.cast(masks, tf.int32)
    valid = (masks >= 0) & (masks < num_classes)
    truth_fg = valid & (masks > 0)
    pred_fg = valid & (predictions > 0)
    hits = truth_fg & tf.equal(predictions, masks)
    count = lambda m: tf.reduce_sum(tf.cast(m, tf.float64), axis=[1, 2])  # noqa: E731
    return 2.0 * count(hits), count(pred_fg) + count(truth_fg)


def _progress(dataset: tf.data.Dataset, desc: str, max_batches: int,
              show: bool) -> Optional[ProgressBar]:
    """A bar over the batches to come (None when not shown); a counter when the number
    is unknown (a set that skips unreadable images has no known size)."""
    if not show:
        return None
    total = int(dataset.cardinality().numpy())
    if max_batches > 0:
        total = min(total, max_batches) if total >= 0 else max_batches
    return ProgressBar(total if total > 0 else None, desc=desc, unit="batch")


def _take(dataset: tf.data.Dataset, max_batches: int) -> tf.data.Dataset:
    return dataset.take(max_batches) if max_batches and max_batches > 0 else dataset


def segmentation_pass(system, dataset: tf.data.Dataset, class_names: Sequence[str],
                      options: Optional[ReportOptions] = None, max_batches: int = 0,
                      progress: bool = True) -> dict:
    """One pass over (images, masks): the pixel confusion (and, for methods that have
    one, the true-class diagnostic); with ``options`` also the report's extras:
    per-class pixel-score histograms for AUPR (``pixel_ranking``) and a per-image lesion
    Dice with thumbnails of only the k worst and k best images (bounded memory).
    ``max_batches`` (0 = all) applies when ``options`` does not set it."""
    num_classes = len(class_names)
    max_batches = options.max_batches if options is not None else max_batches
    confusion = SegmentationConfusion(num_classes, ignore_label=IGNORE_LABEL,
                                      class_names=class_names)
    softmax = system.predicts_by_softmax
    histogram = (pr.PixelScoreHistogram(num_classes, options.aupr_bins, class_names=class_names)
                 if softmax and options is not None else None)
    true_classes = (SegmentationConfusion(num_classes, ignore_label=IGNORE_LABEL,
                                          class_names=class_names)
                    if system.has_true_class_diagnostic else None)

    @tf.function
    def step(images, masks):
        if softmax:
            # The whole image: overlapping tiles where it is larger than the model's input
            # (a segmenter trained on patches of a larger working resolution).
            probabilities = system.segment_probabilities(images)
            predictions = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            if histogram is not None:
                histogram.update_state(masks, probabilities)
        else:
            predictions = tf.cast(system.predict_classes(images), tf.int32)
        confusion.update_state(masks, predictions)
        if true_classes is not None:
            true_classes.update_state(masks, system.predict_classes_given_truth(images, masks))
        if options is None:  # metrics only: no per-image Dice to compute
            return predictions, predictions, predictions
        twice_hits, denominator = per_image_dice_terms(masks, predictions, num_classes)
        return predictions, twice_hits, denominator

    extremes = ExtremeImages(options.grid_images if options is not None else 0)
    scores: List[float] = []
    undefined = index = batches = 0
    resolution = None
    bar = _progress(dataset, "segmentation", max_batches, progress)
    for images, masks in _take(dataset, max_batches):
        if resolution is None:
            resolution = measured_resolution(system, images)
        predictions, twice_hits, denominator = step(images, masks)
        if options is not None:
            twice_hits, denominator = twice_hits.numpy(), denominator.numpy()
            fetched = None
            for i in range(len(denominator)):
                if denominator[i] > 0:
                    score = float(twice_hits[i] / denominator[i])
                    scores.append(score)
                    if extremes.wants(score, index):
                        fetched = fetched or (images.numpy(), masks.numpy(), predictions.numpy())
                        extremes.add(Thumbnail(score, index, display_uint8(fetched[0][i]),
                                                fetched[1][i], fetched[2][i]))
                else:
                    undefined += 1
                index += 1
        else:
            index += int(tf.shape(masks)[0])
        batches += 1
        if bar is not None:
            bar.update(batches)
    if bar is not None:
        bar.close()
    return {"confusion": confusion, "histogram": histogram, "true_classes": true_classes,
            "extremes": extremes, "image_dice": np.asarray(scores), "undefined_dice": undefined,
            "num_images": index, "resolution": resolution}


def measured_resolution(system, images: tf.Tensor) -> dict:
    """The resolution a segmentation was measured at: the validation images' side, the
    model's input side, and whether the images were segmented by tiles."""
    height, width = int(images.shape[1]), int(images.shape[2])
    tile = model_input_side(system.seg_model) if system.seg_model is not None else None
    tiled = tile is not None and (height, width) != (tile, tile)
    return {"image_px": [height, width], "model_input_px": tile, "tiled": tiled}


def classification_pass(system, dataset: tf.data.Dataset, num_grades: int,
                        class_names: Sequence[str], options: Optional[ReportOptions] = None,
                        max_batches: int = 0, progress: bool = True) -> dict:
    """One pass over (images, labels): grade metrics (softmax classifiers) and image-level
    label metrics (multi-label ones, ``class_names[1:]``); with ``options`` also every
    image's grade probabilities for the report's ROC curves (N x G numbers: small)."""
    max_batches = options.max_batches if options is not None else max_batches
    grades_metrics = ClassificationMetrics(num_grades) if system.scores_grades else None
    labels_metrics = (MultiLabelMetrics(class_names[1:], system.image_label_threshold)
                      if system.image_label_threshold is not None else None)
    keep_probabilities = options is not None and grades_metrics is not None

    @tf.function
    def step(images, labels):
        logits = tf.cast(system.clf_model(images, training=False), tf.float32)
        if grades_metrics is not None:
            grades_metrics.update_state(labels, logits)
        return tf.nn.softmax(logits, axis=-1), tf.sigmoid(logits)

    probabilities, grades = [], []
    batches = 0
    bar = _progress(dataset, "classification", max_batches, progress)
    for images, labels in _take(dataset, max_batches):
        softmax, sigmoid = step(images, labels)
        if keep_probabilities:
            probabilities.append(softmax.numpy().astype(np.float64))
            grades.append(labels.numpy().reshape(-1))
        if labels_metrics is not None:
            labels_metrics.update_state(labels.numpy(), sigmoid.numpy())
        batches += 1
        if bar is not None:
            bar.update(batches)
    if bar is not None:
        bar.close()
    return {"metrics": grades_metrics, "image_labels": labels_metrics,
            "probabilities": (np.concatenate(probabilities) if probabilities
                              else np.zeros((0, num_grades))),
            "grades": np.concatenate(grades) if grades else np.zeros((0,), np.int64)}
