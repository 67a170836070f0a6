"""``ModelSystem``: what one method's models contribute to training, evaluation and export."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import tensorflow as tf

from coopseg.config import ConfigError


@dataclass
class ModelSystem:
    """What one method contributes to training, evaluation and export."""

    method: str
    clf_model: Optional[tf.keras.Model]  # image -> grade logits
    seg_model: Optional[tf.keras.Model]  # image -> segmentation logits
    parts: Dict[str, tf.keras.Model] = field(default_factory=dict)  # checkpointed groups
    # image -> {"grade_logits", "seg_logits"} (export, prediction): one encoder pass, two
    # with JointSeg's per-agent BatchNorm statistics (each head needs its own statistics)
    joint_model: Optional[tf.keras.Model] = None
    # Hooks for methods that differ from "softmax grades + per-pixel softmax" (DecoupledNet).
    # Each loss is (labels, logits, global_batch_size) -> scalar; None = the JointSeg loss.
    # ``seg_loss`` also gets ``class_weights=`` (None, or [num_seg_classes] estimated by the
    # trainer from the labels' class indices when train.seg_class_weighting is set).
    clf_loss: Optional[Callable] = None
    seg_loss: Optional[Callable] = None
    # images -> int32 class map [B, H, W] for evaluation; None = argmax of seg_model.
    seg_predict: Optional[Callable] = None
    # (images, true label maps) -> int32 class map using the true image-level classes:
    # a diagnostic for methods that segment only the classes they identify (DecoupledNet).
    seg_predict_true_classes: Optional[Callable] = None
    # () -> tf.Module with a ``serve`` or ``predict`` tf.function; None = ServingModule.
    serving_module: Optional[Callable] = None
    # Grade metrics need softmax grades; multi-label classifiers skip them and are
    # scored as image-level labels (mAP, and P/R/F1 at this score threshold) instead.
    evaluate_grades: bool = True
    image_label_threshold: Optional[float] = None
    # The variables both agents train (JointSeg's encoder θ1): the cooperation options
    # (train.cooperation) act on the two agents' gradients of exactly these.
    shared_variables: list = field(default_factory=list)

    def require(self, mode: str) -> None:
        """Raise ConfigError if ``mode`` needs a head this method does not have."""
        if mode in ("joint", "clf_only") and self.clf_model is None:
            raise ConfigError(f"method {self.method!r} has no classifier; train.mode={mode!r} "
                              "needs one (use seg_only)")
        if mode in ("joint", "seg_only") and self.seg_model is None:
            raise ConfigError(f"method {self.method!r} has no segmenter; train.mode={mode!r} "
                              "needs one (use clf_only)")


def float32_outputs(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Floating outputs as float32 (a half-precision head must not leak into a signature)."""
    return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v for k, v in out.items()}
