"""Streaming validation metrics, updated per batch inside ``tf.function``.

``SegmentationConfusion`` (IoU/Dice, mIoU: the paper's Tables I-III) and
``ClassificationMetrics`` (top-1/top-2/binary accuracy, QWK: Table IV, Kaggle DR) are
Keras metrics whose state is sync-on-read sums, correct under ``tf.distribute``. The
offline NumPy counterparts live in ``coopseg.evaluation.metric_tables``.
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Optional, Sequence

import tensorflow as tf

from coopseg.config import IGNORE_LABEL, NUM_GRADES, ConfigError
from coopseg.evaluation.metric_tables import to_jsonable
from coopseg.models.losses import partial_annotation

with warnings.catch_warnings():
    # TFA warns on import that it is end-of-life; it is confined to this module (for
    # CohenKappa) and data_pipelines/augment.py, so a move to Keras 3 touches two files
    # and replaces CohenKappa here.
    warnings.filterwarnings("ignore", message=r"[\s\S]*TensorFlow Addons", category=UserWarning)
    import tensorflow_addons as tfa

_NAN = math.nan


def _mean_defined(values: tf.Tensor) -> tf.Tensor:
    """Mean over the non-nan entries; nan when there is none."""
    defined = tf.logical_not(tf.math.is_nan(values))
    count = tf.reduce_sum(tf.cast(defined, values.dtype))
    total = tf.reduce_sum(tf.where(defined, values, tf.zeros_like(values)))
    return tf.where(count > 0, tf.math.divide_no_nan(total, count), tf.constant(_NAN, values.dtype))


def _ratio_or_nan(numerator: tf.Tensor, denominator: tf.Tensor) -> tf.Tensor:
    return tf.where(denominator > 0, tf.math.divide_no_nan(numerator, denominator),
                    tf.constant(_NAN, numerator.dtype))


def _pair_counts(labels: tf.Tensor, predictions: tf.Tensor, valid: tf.Tensor, num_classes: int) -> tf.Tensor:
    """[C, C] float64 counts of (label, prediction) pairs where ``valid``.

    One bincount over ``label * C + prediction``, invalid pixels sent to an extra
    bin that is dropped. Measured on 2 CPU cores for (8, 224, 224) int32 batches:
    1.2-1.4 ms against 15-19 ms for ``tf.math.confusion_matrix`` (with a boolean mask
    or with weights) — the scatter in ``confusion_matrix`` is the slow part.
    """
    bins = num_classes * num_classes
    index = tf.where(valid, labels * num_classes + predictions, bins)
    counts = tf.math.bincount(index, minlength=bins + 1, maxlength=bins + 1, dtype=tf.int64)
    return tf.cast(tf.reshape(counts[:bins], [num_classes, num_classes]), tf.float64)


def zero_variables(metric: tf.keras.metrics.Metric) -> None:
    """Reset every variable of ``metric`` to zero. assign() rather than Keras'
    batch_set_value, so a reset also works inside a tf.function."""
    for variable in metric.variables:
        variable.assign(tf.zeros_like(variable))


class SegmentationConfusion(tf.keras.metrics.Metric):
    """Streaming pixel confusion matrix (rows = true class, cols = predicted class).

    The matrix is accumulated over the whole validation set, so mIoU is that of the set,
    not a mean of per-batch IoUs. ``update_state``, ``reset_state`` and ``result`` work
    inside and outside ``tf.function`` and return tensors; ``result_dict`` is eager only.

    ``update_state(y_true, y_pred)``: ``y_true`` int ``[B, H, W]`` (or ``[B, H, W, 1]``);
    ``y_pred`` either class indices of the same shape or logits/probabilities
    ``[B, H, W, num_classes]`` (argmax is taken). Every label outside
    ``[0, num_classes)`` is ignored — ``ignore_label`` (VOC's 255 border) and any
    other out-of-range value alike; predictions must be valid classes.

    ``result()`` keys: ``confusion_matrix``, ``iou`` and ``dice`` (per class, nan for a
    class absent from both truth and prediction: its IoU is 0/0, and it is left out
    of every mean), ``miou``, ``miou_no_background`` (classes 1..C-1), ``mean_dice``,
    ``mean_dice_no_background``, ``pixel_accuracy``.
    """

    def __init__(self, num_classes: int, ignore_label: int = IGNORE_LABEL,
                 class_names: Optional[Sequence[str]] = None, name: str = "segmentation_confusion"):
        super().__init__(name=name, dtype=tf.float64)
        if num_classes < 2:
            raise ConfigError(f"SegmentationConfusion needs num_classes >= 2, got {num_classes}")
        if 0 <= ignore_label < num_classes:
            raise ConfigError(f"ignore_label={ignore_label} is a real class (num_classes={num_classes})")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class_names for num_classes={num_classes}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.class_names = tuple(class_names or (f"class_{i}" for i in range(num_classes)))
        # float64 like Keras' MeanIoU: exact integer counts up to 2**53 pixels, and
        # sync-on-read sums work on every device type.
        self.confusion = self.add_weight("confusion", shape=(num_classes, num_classes),
                                         initializer="zeros", dtype=tf.float64)

    def update_state(self, y_true, y_pred) -> None:
        """Add one batch's pixels to the confusion matrix."""
        y_true = tf.convert_to_tensor(y_true)
        y_pred = tf.convert_to_tensor(y_pred)
        if y_true.shape.rank == 4 and y_true.shape[-1] == 1:
            y_true = tf.squeeze(y_true, axis=-1)
        if y_pred.shape.rank == y_true.shape.rank + 1:
            if y_pred.shape[-1] not in (None, self.num_classes):
                raise ValueError(f"y_pred has {y_pred.shape[-1]} channels; expected "
                                 f"{self.num_classes} class scores")
            predictions = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        elif y_pred.shape.rank == y_true.shape.rank:
            predictions = tf.cast(y_pred, tf.int32)
            tf.debugging.assert_non_negative(predictions, message="predicted class < 0")
            tf.debugging.assert_less(predictions, self.num_classes,
                                     message=f"predicted class >= num_classes={self.num_classes}")
        else:
            raise ValueError(f"y_true has shape {y_true.shape}; y_pred {y_pred.shape} must be "
                             f"class indices of that shape or add a class axis")
        tf.debugging.assert_equal(tf.shape(y_true), tf.shape(predictions),
                                  message="y_true and y_pred differ in shape")
        # Cast before the arithmetic: uint8 masks would overflow in label * C + pred.
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        predictions = tf.reshape(predictions, [-1])
        # A partial label (a pixel no annotated class covers, in a partially annotated
        # set) is known not to be any annotated class: predicting one is a false positive
        # of it (counted against background); predicting another class is unknown.
        is_partial, annotated = partial_annotation(labels, self.num_classes)
        predicted_annotated = tf.gather(annotated, predictions[:, None], batch_dims=1)[:, 0]
        labels = tf.where(is_partial & predicted_annotated, 0, labels)
        valid = (labels >= 0) & (labels < self.num_classes)
        self.confusion.assign_add(_pair_counts(labels, predictions, valid, self.num_classes))

    def result(self) -> Dict[str, tf.Tensor]:
        cm = tf.convert_to_tensor(self.confusion)
        hits = tf.linalg.diag_part(cm)
        true_pixels = tf.reduce_sum(cm, axis=1)
        pred_pixels = tf.reduce_sum(cm, axis=0)
        union = true_pixels + pred_pixels - hits
        iou = _ratio_or_nan(hits, union)
        # Dice's denominator is 0 exactly when the union is: same classes undefined.
        dice = _ratio_or_nan(2.0 * hits, true_pixels + pred_pixels)
        return {
            "confusion_matrix": cm,
            "iou": iou,
            "dice": dice,
            "miou": _mean_defined(iou),
            "miou_no_background": _mean_defined(iou[1:]),
            "mean_dice": _mean_defined(dice),
            "mean_dice_no_background": _mean_defined(dice[1:]),
            "pixel_accuracy": _ratio_or_nan(tf.reduce_sum(hits), tf.reduce_sum(cm)),
        }

    def result_dict(self) -> dict:
        """``result()`` as JSON-ready Python: per-class values keyed by class name,
        None where undefined, the confusion matrix as nested lists of ints. Eager only."""
        values = {key: value.numpy() for key, value in self.result().items()}
        out = to_jsonable({key: value for key, value in values.items()
                           if key not in ("iou", "dice", "confusion_matrix")})
        for key in ("iou", "dice"):
            out[key] = dict(zip(self.class_names, to_jsonable(values[key])))
        out["confusion_matrix"] = values["confusion_matrix"].astype("int64").tolist()
        return out

    def reset_state(self) -> None:
        zero_variables(self)

    def get_config(self) -> dict:
        return {**super().get_config(), "num_classes": self.num_classes,
                "ignore_label": self.ignore_label, "class_names": list(self.class_names)}


class ClassificationMetrics(tf.keras.metrics.Metric):
    """Streaming DR-grading metrics from ``y_true`` int ``[B]`` and scores ``[B, G]``.

    Scores may be logits or probabilities: every metric here depends only on their
    order. ``result()`` keys (nan before any update):
    - ``top1_accuracy``: argmax == grade.
    - ``top2_accuracy``: the true grade is among the two highest scores; a tie at
      the boundary counts as a hit (like ``tf.math.in_top_k``).
    - ``binary_accuracy``: any DR (grade >= 1) vs none, with the predicted binary
      label ``argmax >= 1`` — what the paper's Table IV reports. The alternative
      ``1 - p(0) >= 0.5`` differs when p(0) is the largest probability but below 0.5;
      it is the ranking score ``metric_tables.grade_at_least_probability`` offers for
      offline sensitivity/specificity/AUC.
    - ``quadratic_kappa``: ``tfa.metrics.CohenKappa(weightage='quadratic')`` on the
      argmax grade; nan when undefined (both raters constant on one grade).
    - ``confusion_matrix`` ``[G, G]`` (rows true, cols argmax) and ``count``.
    """

    def __init__(self, num_grades: int = NUM_GRADES, name: str = "classification_metrics"):
        super().__init__(name=name, dtype=tf.float64)
        if num_grades < 2:
            raise ConfigError(f"ClassificationMetrics needs num_grades >= 2, got {num_grades}")
        self.num_grades = num_grades
        self.confusion = self.add_weight("confusion", shape=(num_grades, num_grades),
                                         initializer="zeros", dtype=tf.float64)
        self.top2_hits = self.add_weight("top2_hits", shape=(), initializer="zeros", dtype=tf.float64)
        self.kappa = tfa.metrics.CohenKappa(num_classes=num_grades, weightage="quadratic",
                                            sparse_labels=True, name="quadratic_kappa")

    def update_state(self, y_true, y_pred) -> None:
        """Add one batch: ``y_true`` grades ``[B]`` (or ``[B, 1]``), ``y_pred`` ``[B, G]``."""
        scores = tf.cast(tf.convert_to_tensor(y_pred), tf.float32)
        if scores.shape.rank != 2 or scores.shape[-1] not in (None, self.num_grades):
            raise ValueError(f"y_pred must be scores [B, {self.num_grades}], got {scores.shape}")
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        tf.debugging.assert_non_negative(labels, message="grade < 0 in y_true")
        tf.debugging.assert_less(labels, self.num_grades,
                                 message=f"grade >= num_grades={self.num_grades} in y_true")
        tf.debugging.assert_equal(tf.shape(labels)[0], tf.shape(scores)[0],
                                  message="y_true and y_pred differ in batch size")
        predicted = tf.argmax(scores, axis=-1, output_type=tf.int32)
        valid = tf.ones_like(labels, dtype=tf.bool)
        self.confusion.assign_add(_pair_counts(labels, predicted, valid, self.num_grades))
        # Rank of the true grade = how many grades score strictly higher.
        true_score = tf.gather(scores, labels, batch_dims=1)
        rank = tf.reduce_sum(tf.cast(scores > true_score[:, None], tf.int32), axis=1)
        self.top2_hits.assign_add(tf.reduce_sum(tf.cast(rank < 2, tf.float64)))
        self.kappa.update_state(labels, predicted)

    def result(self) -> Dict[str, tf.Tensor]:
        cm = tf.convert_to_tensor(self.confusion)
        count = tf.reduce_sum(cm)
        # Binary agreement: true and predicted both grade 0, or both grade >= 1.
        binary_hits = cm[0, 0] + tf.reduce_sum(cm[1:, 1:])
        kappa = tf.cast(self.kappa.result(), tf.float64)
        return {
            "count": count,
            "top1_accuracy": _ratio_or_nan(tf.linalg.trace(cm), count),
            "top2_accuracy": _ratio_or_nan(tf.convert_to_tensor(self.top2_hits), count),
            "binary_accuracy": _ratio_or_nan(binary_hits, count),
            # TFA reports 0 for an empty matrix; nothing seen is "undefined" here.
            "quadratic_kappa": tf.where(count > 0, kappa, tf.constant(_NAN, tf.float64)),
            "confusion_matrix": cm,
        }

    def result_dict(self) -> dict:
        """``result()`` as JSON-ready Python floats/ints (None where undefined). Eager only."""
        values = {key: value.numpy() for key, value in self.result().items()}
        out = to_jsonable({key: value for key, value in values.items() if key != "confusion_matrix"})
        out["count"] = int(values["count"])
        out["confusion_matrix"] = values["confusion_matrix"].astype("int64").tolist()
        return out

    def reset_state(self) -> None:
        zero_variables(self)  # includes the CohenKappa sub-metric's matrix

    def get_config(self) -> dict:
        return {**super().get_config(), "num_grades": self.num_grades}
