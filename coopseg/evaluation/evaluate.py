"""Evaluate a trained system on validation data: the papers' metrics, nothing more.

Training-time validation, ``coopseg-evaluate`` and the experiment runner call
``evaluate_system``; it runs the same passes as the full report (``passes``) without the
report's extras.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf

from coopseg.evaluation.passes import classification_pass, segmentation_pass


def evaluate_system(system, clf_val: Optional[tf.data.Dataset],
                    seg_val: Optional[tf.data.Dataset], num_grades: int,
                    class_names: Sequence[str], max_batches: int = 0,
                    progress: bool = False) -> Dict[str, dict]:
    """Evaluate whichever heads the system has on whichever validation sets exist.

    - ``classification``: top-1/top-2/binary accuracy, QWK and the grade confusion
      matrix (softmax classifiers);
    - ``image_labels``: per-class AP, mAP, precision/recall/F1 at the system's threshold
      (multi-label classifiers, over ``class_names[1:]``);
    - ``segmentation``: confusion-matrix mIoU (with and without background), per-class
      IoU and Dice, accumulated over the whole set (not averaged per batch);
    - ``segmentation_true_classes``: the same given the true image-level classes, for
      methods that segment only the classes they identify (DecoupledNet).
    """
    out: Dict[str, dict] = {}
    scores_clf = system.scores_grades or system.image_label_threshold is not None
    if system.clf_model is not None and clf_val is not None and scores_clf:
        clf = classification_pass(system, clf_val, num_grades, class_names,
                                  max_batches=max_batches, progress=progress)
        if clf["metrics"] is not None:
            out["classification"] = clf["metrics"].result_dict()
        if clf["image_labels"] is not None:
            out["image_labels"] = clf["image_labels"].result_dict()
    if system.seg_model is not None and seg_val is not None:
        seg = segmentation_pass(system, seg_val, class_names, max_batches=max_batches,
                                progress=progress)
        out["segmentation"] = seg["confusion"].result_dict()
        out["segmentation"]["resolution"] = seg["resolution"]
        if seg["true_classes"] is not None:
            out["segmentation_true_classes"] = seg["true_classes"].result_dict()
    return out
