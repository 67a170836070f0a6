"""Run a trained system over validation data and collect the papers' metrics."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import tensorflow as tf

from coopseg.config import IGNORE_LABEL
from coopseg.evaluation.metrics import ClassificationMetrics, SegmentationConfusion
from coopseg.evaluation.multilabel_metrics import MultiLabelMetrics


def _take(ds: tf.data.Dataset, max_batches: int) -> tf.data.Dataset:
    return ds.take(max_batches) if max_batches and max_batches > 0 else ds


def evaluate_classifier(model: tf.keras.Model, dataset: tf.data.Dataset, num_grades: int,
                        max_batches: int = 0) -> Dict[str, float]:
    """Top-1/top-2/binary accuracy, QWK and the grade confusion matrix."""
    metrics = ClassificationMetrics(num_grades)

    @tf.function
    def predict(images):
        return model(images, training=False)

    for images, grades in _take(dataset, max_batches):
        metrics.update_state(grades, predict(images))
    return metrics.result_dict()


def evaluate_image_labels(model: tf.keras.Model, dataset: tf.data.Dataset,
                          class_names: Sequence[str], threshold: float,
                          max_batches: int = 0) -> Dict[str, object]:
    """Multi-label metrics of a sigmoid classifier (logits out) on (images, multi-hot)
    batches; ``class_names`` are the image-level classes (no background)."""
    metrics = MultiLabelMetrics(class_names, threshold)

    @tf.function
    def predict(images):
        return tf.sigmoid(model(images, training=False))

    for images, labels in _take(dataset, max_batches):
        metrics.update_state(labels.numpy(), predict(images).numpy())
    return metrics.result_dict()


def evaluate_segmenter(model: tf.keras.Model, dataset: tf.data.Dataset,
                       class_names: Sequence[str], max_batches: int = 0,
                       ignore_label: int = IGNORE_LABEL,
                       predict_fn: Optional[Callable] = None,
                       uses_labels: bool = False) -> Dict[str, float]:
    """Confusion-matrix mIoU (with/without background), per-class IoU and Dice,
    accumulated over the whole set (not averaged per batch). ``predict_fn(images)``
    (or ``predict_fn(images, masks)`` when ``uses_labels``, for diagnostics) replaces
    the argmax of ``model``."""
    confusion = SegmentationConfusion(len(class_names), ignore_label=ignore_label,
                                      class_names=class_names)

    @tf.function
    def predict(images, masks):
        if predict_fn is not None:
            return predict_fn(images, masks) if uses_labels else predict_fn(images)
        return tf.argmax(model(images, training=False), axis=-1, output_type=tf.int32)

    for images, masks in _take(dataset, max_batches):
        confusion.update_state(masks, predict(images, masks))
    return confusion.result_dict()


def evaluate_system(system, clf_val: Optional[tf.data.Dataset], seg_val: Optional[tf.data.Dataset],
                    num_grades: int, class_names: Sequence[str],
                    max_batches: int = 0) -> Dict[str, dict]:
    """Evaluate whichever heads the system has on whichever validation sets exist."""
    out: Dict[str, dict] = {}
    if system.clf_model is not None and clf_val is not None and system.evaluate_grades:
        out["classification"] = evaluate_classifier(system.clf_model, clf_val, num_grades,
                                                    max_batches)
    if (system.clf_model is not None and clf_val is not None
            and system.image_label_threshold is not None):
        out["image_labels"] = evaluate_image_labels(system.clf_model, clf_val, class_names[1:],
                                                    system.image_label_threshold, max_batches)
    if system.seg_model is not None and seg_val is not None:
        out["segmentation"] = evaluate_segmenter(system.seg_model, seg_val, class_names,
                                                 max_batches, predict_fn=system.seg_predict)
        if system.seg_predict_true_classes is not None:
            out["segmentation_true_classes"] = evaluate_segmenter(
                system.seg_model, seg_val, class_names, max_batches,
                predict_fn=system.seg_predict_true_classes, uses_labels=True)
    return out
