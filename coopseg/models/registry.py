"""Build the model system a method needs: which end-to-end models the agents train.

The trainer only sees image -> logits models (``clf_model``, ``seg_model``) and the
named parameter groups to checkpoint (``parts``), so JointSeg, the baselines and
DecoupledNet all run through the same loop, checkpoints and export. Which builder a
method uses is its entry in the method table (``coopseg.config.methods``).
"""
from __future__ import annotations

from coopseg.config import ExperimentConfig, method_spec
from coopseg.config.methods import resolve
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.baselines.builders import build_baseline
from coopseg.models.jointseg.network import build_jointseg
from coopseg.models.system import ModelSystem


def build_jointseg_system(config: ExperimentConfig) -> ModelSystem:
    """JointSeg: encoder, classifier and decoder, the agents' models sharing the encoder."""
    m = build_jointseg(config.model)
    parts = {"encoder": m.encoder, "classifier": m.classifier, "decoder": m.decoder}
    if m.clf_encoder_view is not None:
        # The classifier agent's BN moving statistics live only in the view; its
        # other weights are the encoder's and are checkpointed once.
        parts["clf_encoder_statistics"] = m.clf_encoder_view
    return ModelSystem(config.method, m.clf_model, m.seg_model, parts=parts,
                       joint_model=m.joint_model, shared_variables=m.shared_variables)


def build_single_network_system(config: ExperimentConfig) -> ModelSystem:
    """A method of one network (the paper's baselines): a segmenter or a classifier, as
    its table entry's heads say, built by the entry's ``network``."""
    spec = method_spec(config.method)
    kwargs = ({"width_multiplier": config.model.vgg_width_multiplier,
               "batch_norm": config.model.vgg_batch_norm} if spec.vgg_trunk else {})
    if config.train.backbone_weights:  # ImageNet weights expect their own input scale
        kwargs["input_adapter"] = input_adapter_kind(config)
    model = build_baseline(spec.name, config.model, **kwargs)
    if spec.has_segmenter:
        return ModelSystem(spec.name, None, model, parts={spec.name: model})
    return ModelSystem(spec.name, model, None, parts={spec.name: model})


def build_system(config: ExperimentConfig) -> ModelSystem:
    """The models of ``config.method``, built by its table entry's builder."""
    return resolve(method_spec(config.method).builder)(config)
