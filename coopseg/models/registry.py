"""Build the model system a method needs: which end-to-end models the agents train.

The trainer only sees image -> logits models (``clf_model``, ``seg_model``) and the
named parameter groups to checkpoint (``parts``), so JointSeg, the baselines and
DecoupledNet all run through the same loop, checkpoints and export.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import tensorflow as tf

from coopseg.config import ConfigError, ExperimentConfig

SEG_BASELINES = ("fcn8s", "inception_unet")
CLF_BASELINES = ("vgg16", "vgg19", "inceptionv3")
METHODS = ("jointseg",) + SEG_BASELINES + CLF_BASELINES


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
    # (config, start_step, report) -> Inputs; None = coopseg.training.inputs.build_inputs.
    build_inputs: Optional[Callable] = None
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


def build_system(config: ExperimentConfig) -> ModelSystem:
    """The models for ``config.method`` (see METHODS)."""
    method = config.method
    if method == "jointseg":
        from coopseg.models.jointseg import build_jointseg
        m = build_jointseg(config.model)
        parts = {"encoder": m.encoder, "classifier": m.classifier, "decoder": m.decoder}
        if m.clf_encoder_view is not None:
            # The classifier agent's BN moving statistics live only in the view; its
            # other weights are the encoder's and are checkpointed once.
            parts["clf_encoder_statistics"] = m.clf_encoder_view
        return ModelSystem(method, m.clf_model, m.seg_model, parts=parts,
                           joint_model=m.joint_model, shared_variables=m.shared_variables)
    if method in SEG_BASELINES or method in CLF_BASELINES:
        from coopseg.models.baselines import build_baseline
        kwargs = ({"width_multiplier": config.model.vgg_width_multiplier,
                   "batch_norm": config.model.vgg_batch_norm}
                  if method in ("fcn8s", "vgg16") else {})
        if config.train.backbone_weights:  # ImageNet weights expect their own input scale
            from coopseg.models.backbone_weights import input_adapter_kind
            kwargs["input_adapter"] = input_adapter_kind(config)
        model = build_baseline(method, config.model, **kwargs)
        if method in SEG_BASELINES:
            return ModelSystem(method, None, model, parts={method: model})
        return ModelSystem(method, model, None, parts={method: model})
    if method == "decouplednet":
        from coopseg.models.decouplednet_system import build_decouplednet_system
        return build_decouplednet_system(config)
    if method == "deconvnet":  # DecoupledNet's Table 1 baseline
        from coopseg.models.decouplednet_system import build_deconvnet_system
        return build_deconvnet_system(config)
    raise ConfigError(f"unknown method {method!r}; choose one of "
                      f"{METHODS + ('decouplednet', 'deconvnet')}")
