"""Build the model system a method needs: which end-to-end models the agents train.

The trainer only sees image -> logits models (``clf_model``, ``seg_model``) and the
named parameter groups to checkpoint (``parts``), so JointSeg, the baselines and
DecoupledNet all run through the same loop, checkpoints and export.
"""
from __future__ import annotations

from typing import Callable, Dict

from coopseg.config import ConfigError, ExperimentConfig
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.baselines.builders import build_baseline
from coopseg.models.decouplednet.system import build_deconvnet_system, build_decouplednet_system
from coopseg.models.jointseg.network import build_jointseg
from coopseg.models.system import ModelSystem

SEG_BASELINES = ("fcn8s", "inception_unet")
CLF_BASELINES = ("vgg16", "vgg19", "inceptionv3")


def _jointseg(config: ExperimentConfig) -> ModelSystem:
    m = build_jointseg(config.model)
    parts = {"encoder": m.encoder, "classifier": m.classifier, "decoder": m.decoder}
    if m.clf_encoder_view is not None:
        # The classifier agent's BN moving statistics live only in the view; its
        # other weights are the encoder's and are checkpointed once.
        parts["clf_encoder_statistics"] = m.clf_encoder_view
    return ModelSystem(config.method, m.clf_model, m.seg_model, parts=parts,
                       joint_model=m.joint_model, shared_variables=m.shared_variables)


def _baseline(config: ExperimentConfig) -> ModelSystem:
    method = config.method
    kwargs = ({"width_multiplier": config.model.vgg_width_multiplier,
               "batch_norm": config.model.vgg_batch_norm}
              if method in ("fcn8s", "vgg16") else {})
    if config.train.backbone_weights:  # ImageNet weights expect their own input scale
        kwargs["input_adapter"] = input_adapter_kind(config)
    model = build_baseline(method, config.model, **kwargs)
    if method in SEG_BASELINES:
        return ModelSystem(method, None, model, parts={method: model})
    return ModelSystem(method, model, None, parts={method: model})


# One builder per method; ``coopseg.config.METHODS`` names the same methods (a test
# keeps the two equal), so ``ExperimentConfig.validate`` rejects an unknown method
# before any data is read or generated.
BUILDERS: Dict[str, Callable[[ExperimentConfig], ModelSystem]] = {
    "jointseg": _jointseg,
    **{name: _baseline for name in SEG_BASELINES + CLF_BASELINES},
    "decouplednet": build_decouplednet_system,
    "deconvnet": build_deconvnet_system,  # DecoupledNet's Table 1 baseline
}


def build_system(config: ExperimentConfig) -> ModelSystem:
    """The models for ``config.method`` (one of ``BUILDERS``)."""
    if config.method not in BUILDERS:
        raise ConfigError(f"unknown method {config.method!r}; choose one of "
                          f"{', '.join(BUILDERS)}")
    return BUILDERS[config.method](config)
