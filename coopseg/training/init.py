"""How a fresh run (no checkpoint of its own) initialises its models: from a classifier
run's encoder (the paper's two-step baselines, ``train.init_encoder_from``) or from an
ImageNet weights file (``train.backbone_weights``). A resumed run restores its own
checkpoint and never reads either source again.
"""
from __future__ import annotations

from typing import Callable, Optional

from absl import logging

from coopseg.config import ConfigError, ExperimentConfig, backbone_of, restores_stage1
from coopseg.models.backbone_weights import load_backbone_weights
from coopseg.models.system import ModelSystem
from coopseg.models.transfer import transfer_encoder_weights
from coopseg.runs.run_dir import load_run_config, load_trained_system


def backbone_init_fn(config: ExperimentConfig,
                     system: ModelSystem) -> Optional[Callable[[], None]]:
    """A function that loads ``train.backbone_weights`` into the method's backbone, or None
    (no file set, or a DecoupledNet stage 2, which restores its stage-1 classifier)."""
    path = config.train.backbone_weights
    if not path or restores_stage1(config):
        return None
    backbone = backbone_of(config.method)
    # The backbone is the classifier's where there is one (vgg*, inceptionv3, DecoupledNet's
    # classification network), else the segmenter's (FCN-8s, DeconvNet).
    target = system.clf_model if system.clf_model is not None else system.seg_model

    def init() -> None:
        load_backbone_weights(target, path, backbone)

    return init


def _check_source_adapter(source_config: ExperimentConfig, run_dir: str) -> None:
    # The ImageNet input adapter has no weights, so the by-name transfer cannot carry it:
    # the copied trunk would see images ~57x off the scale it learned on.
    if source_config.train.backbone_weights:
        raise ConfigError(
            f"{run_dir} was started from ImageNet weights (train.backbone_weights="
            f"{source_config.train.backbone_weights!r}) and sees its images through the "
            "ImageNet input adapter, which this model (without train.backbone_weights) lacks; "
            "start it from the weights file with --backbone_weights instead")


def two_step_init_fn(config: ExperimentConfig, system: ModelSystem,
                     encoder_prefix: str) -> Optional[Callable[[], None]]:
    """A function that initialises a fresh ``system`` from ``train.backbone_weights`` or
    from the classifier run ``train.init_encoder_from``, or None (random initialisation).

    The classifier run's ``config.json`` says which model it was; that model is rebuilt,
    its latest checkpoint restored, and every layer named ``encoder_prefix*`` copied by
    name into the new model (``transfer_encoder_weights`` checks that none is missed).
    """
    run_dir = config.train.init_encoder_from
    if config.train.backbone_weights:
        if run_dir:  # also rejected by ExperimentConfig.validate
            raise ConfigError("train.backbone_weights and train.init_encoder_from both "
                              "initialise the backbone; set one of them")
        return backbone_init_fn(config, system)
    if not run_dir:
        return None
    if not encoder_prefix:
        raise ConfigError(f"train.init_encoder_from is not supported for method {config.method!r}")

    def init() -> None:
        _check_source_adapter(load_run_config(run_dir), run_dir)
        source = load_trained_system(run_dir)
        source_model = source.clf_model if source.clf_model is not None else source.seg_model
        target_model = system.seg_model if system.seg_model is not None else system.clf_model
        copied = transfer_encoder_weights(source_model, target_model, encoder_prefix)
        logging.info("Two-step init: %d encoder tensors from %s", copied, run_dir)

    return init
