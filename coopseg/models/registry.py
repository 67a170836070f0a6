"""Build the model system a method needs: which end-to-end models the agents train.

The trainer only sees image -> logits models (``clf_model``, ``seg_model``) and the
named parameter groups to checkpoint (``parts``), so JointSeg, the baselines and
DecoupledNet all run through the same loop, checkpoints and export.
"""
from __future__ import annotations

from coopseg.config import ConfigError, ExperimentConfig
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.baselines import build_baseline
from coopseg.models.decouplednet_system import build_deconvnet_system, build_decouplednet_system
from coopseg.models.jointseg import build_jointseg
from coopseg.models.system import ModelSystem

SEG_BASELINES = ("fcn8s", "inception_unet")
CLF_BASELINES = ("vgg16", "vgg19", "inceptionv3")
METHODS = ("jointseg",) + SEG_BASELINES + CLF_BASELINES


def build_system(config: ExperimentConfig) -> ModelSystem:
    """The models for ``config.method`` (see METHODS)."""
    method = config.method
    if method == "jointseg":
        m = build_jointseg(config.model)
        parts = {"encoder": m.encoder, "classifier": m.classifier, "decoder": m.decoder}
        if m.clf_encoder_view is not None:
            # The classifier agent's BN moving statistics live only in the view; its
            # other weights are the encoder's and are checkpointed once.
            parts["clf_encoder_statistics"] = m.clf_encoder_view
        return ModelSystem(method, m.clf_model, m.seg_model, parts=parts,
                           joint_model=m.joint_model, shared_variables=m.shared_variables)
    if method in SEG_BASELINES or method in CLF_BASELINES:
        kwargs = ({"width_multiplier": config.model.vgg_width_multiplier,
                   "batch_norm": config.model.vgg_batch_norm}
                  if method in ("fcn8s", "vgg16") else {})
        if config.train.backbone_weights:  # ImageNet weights expect their own input scale
            kwargs["input_adapter"] = input_adapter_kind(config)
        model = build_baseline(method, config.model, **kwargs)
        if method in SEG_BASELINES:
            return ModelSystem(method, None, model, parts={method: model})
        return ModelSystem(method, model, None, parts={method: model})
    if method == "decouplednet":
        return build_decouplednet_system(config)
    if method == "deconvnet":  # DecoupledNet's Table 1 baseline
        return build_deconvnet_system(config)
    raise ConfigError(f"unknown method {method!r}; choose one of "
                      f"{METHODS + ('decouplednet', 'deconvnet')}")
