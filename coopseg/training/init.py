"""Two-step initialisation (paper Table I): start a segmenter from a trained classifier.

``train.init_encoder_from`` names the run directory of a classifier trained with
``mode=clf_only``. Its ``config.json`` says which model it was; that model is rebuilt,
its latest checkpoint restored, and every encoder weight copied by layer name into
the new model (``transfer_encoder_weights`` checks that none is missed).
"""
from __future__ import annotations

import json
import os
from typing import Callable, Optional

import tensorflow as tf
from absl import logging

from coopseg.config import ConfigError, ExperimentConfig, from_dict
from coopseg.models.registry import ModelSystem, build_system
from coopseg.models.transfer import transfer_encoder_weights

# Which layers are "the encoder" for each segmentation method, and which classifier
# method trains such an encoder.
ENCODER_PREFIX = {"fcn8s": "block", "inception_unet": "encoder_", "jointseg": "encoder_"}


def load_trained_system(run_dir: str) -> ModelSystem:
    """Rebuild the model of a finished run and restore its latest checkpoint."""
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"{run_dir} is not a coopseg run directory: {config_path} is missing")
    with open(config_path) as f:
        source_config = from_dict(json.load(f))
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise ConfigError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    system = build_system(source_config)
    tf.train.Checkpoint(**system.parts).restore(latest).expect_partial()
    logging.info("Loaded %s (%s) from %s", source_config.name, source_config.method, latest)
    return system


def encoder_init_fn(config: ExperimentConfig, system: ModelSystem) -> Optional[Callable[[], None]]:
    """A function that copies the pre-trained encoder into ``system``, or None."""
    run_dir = config.train.init_encoder_from
    if config.method == "decouplednet":  # its stage 2 starts from the stage-1 classifier
        from coopseg.models.decouplednet_system import stage1_classifier_init_fn
        return stage1_classifier_init_fn(config, system)
    if not run_dir:
        return None
    if config.method not in ENCODER_PREFIX:
        raise ConfigError(f"train.init_encoder_from is not supported for method {config.method!r}")

    def init() -> None:
        source = load_trained_system(run_dir)
        source_model = source.clf_model if source.clf_model is not None else source.seg_model
        target_model = system.seg_model if system.seg_model is not None else system.clf_model
        copied = transfer_encoder_weights(source_model, target_model, ENCODER_PREFIX[config.method])
        logging.info("Two-step init: %d encoder tensors from %s", copied, run_dir)

    return init
