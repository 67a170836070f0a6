"""``ModelSystem``: what one method's models contribute to training, evaluation and export.

The trainer, the evaluation passes and the export see a method's models only through this
class (its losses come with its task, ``coopseg.training.tasks``); a method whose
predictions or SavedModel differ from softmax grades + per-pixel softmax (DecoupledNet)
subclasses it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.models.serving_module import ServingModule
from coopseg.models.sliding_window import segment_probabilities


@dataclass
class ModelSystem:
    """The models of one method and how they are trained, scored and served.

    The defaults are the softmax-grades + per-pixel-softmax behaviour of JointSeg and the
    paper's baselines. A method that differs (DecoupledNet: multi-label classes, foreground
    masks per class, its own inference and SavedModel) subclasses this class and overrides
    the methods below, so no caller checks for a missing hook.
    """

    method: str
    clf_model: Optional[tf.keras.Model]  # image -> grade logits
    seg_model: Optional[tf.keras.Model]  # image -> segmentation logits
    parts: Dict[str, tf.keras.Model] = field(default_factory=dict)  # checkpointed groups
    # image -> {"grade_logits", "seg_logits"} (export, prediction): one encoder pass, two
    # with JointSeg's per-agent BatchNorm statistics (each head needs its own statistics)
    joint_model: Optional[tf.keras.Model] = None
    # The variables both agents train (JointSeg's encoder θ1): the cooperation options
    # (train.cooperation) act on the two agents' gradients of exactly these.
    shared_variables: List[tf.Variable] = field(default_factory=list)
    # Grade metrics need softmax grades; multi-label classifiers skip them and are
    # scored as image-level labels (mAP, and P/R/F1 at this score threshold) instead.
    scores_grades: bool = True
    image_label_threshold: Optional[float] = None

    # Whether ``predict_classes`` is the argmax of ``seg_model``'s softmax (the report's
    # per-pixel scores for AUPR exist only then).
    predicts_by_softmax = True
    # Whether ``predict_classes_given_truth`` exists (a diagnostic for methods that
    # segment only the classes they identify).
    has_true_class_diagnostic = False

    def predict_classes(self, images: tf.Tensor) -> tf.Tensor:
        """int32 class map [B, H, W] for standardised ``images`` of any static size
        (overlapping tiles where they are larger than the model's input)."""
        return tf.argmax(self.segment_probabilities(images), axis=-1, output_type=tf.int32)

    def segment_probabilities(self, images: tf.Tensor) -> tf.Tensor:
        """Softmax probabilities [B, H, W, C] for standardised ``images`` of any static
        size: the whole image where it is the model's input size, else overlapping tiles
        blended with Gaussian weights (``sliding_window.segment_probabilities``)."""
        return segment_probabilities(self.seg_model, images)

    def predict_classes_given_truth(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        """The class map when the true image-level classes are known (see
        ``has_true_class_diagnostic``)."""
        # Not a missing implementation: the softmax methods have no such diagnostic, and
        # callers ask ``has_true_class_diagnostic`` first.
        raise TypeError(f"method {self.method!r} has no true-class diagnostic "
                        "(has_true_class_diagnostic is False)")

    def serving_module(self, input_size: int, working_size: int = 0) -> tf.Module:
        """The tf.Module a SavedModel holds, with a ``serve`` (or ``predict``) tf.function
        (over images of ``working_size`` when the segmenter works at one)."""
        return ServingModule(self, input_size, working_size)

    def require(self, classifier: bool, segmenter: bool, mode: str) -> None:
        """Raise ConfigError if the agents to train (``mode``, the user's word for them)
        need a head this method does not have."""
        if classifier and self.clf_model is None:
            raise ConfigError(f"method {self.method!r} has no classifier; train.mode={mode!r} "
                              "needs one (use seg_only)")
        if segmenter and self.seg_model is None:
            raise ConfigError(f"method {self.method!r} has no segmenter; train.mode={mode!r} "
                              "needs one (use clf_only)")
