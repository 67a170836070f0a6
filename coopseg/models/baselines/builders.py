"""The paper's baselines by name (Tables I-IV): FCN-8s, Inception-UNet and three classifiers.

Each builder lives in its own module; this one re-exports them and maps the names an
experiment uses (``ExperimentConfig.method``) to builders.

    model = build_baseline("fcn8s", ModelConfig(input_size=64), width_multiplier=1 / 16)
"""
from __future__ import annotations

from typing import Callable, Dict

import tensorflow as tf

from coopseg.config import ConfigError, ModelConfig
from coopseg.models.baselines.classifiers import (build_inceptionv3_classifier,
                                                  build_vgg16_classifier, build_vgg19_classifier)
from coopseg.models.baselines.fcn8s import bilinear_upsample_initializer, build_fcn8s
from coopseg.models.baselines.inception_unet import build_inception_unet
from coopseg.models.transfer import WeightTransferError, transfer_encoder_weights

__all__ = [
    "BASELINES", "SEGMENTATION_BASELINES", "build_baseline", "build_fcn8s",
    "build_inception_unet", "build_vgg16_classifier", "build_vgg19_classifier",
    "build_inceptionv3_classifier", "bilinear_upsample_initializer",
    "transfer_encoder_weights", "WeightTransferError",
]

BASELINES: Dict[str, Callable[..., tf.keras.Model]] = {
    "fcn8s": build_fcn8s,
    "inception_unet": build_inception_unet,
    "vgg16": build_vgg16_classifier,
    "vgg19": build_vgg19_classifier,
    "inceptionv3": build_inceptionv3_classifier,
}
# Baselines whose output is per-pixel class logits; the others output grade logits.
SEGMENTATION_BASELINES = ("fcn8s", "inception_unet")


def build_baseline(name: str, config: ModelConfig, **kwargs) -> tf.keras.Model:
    """Build the baseline called ``name``; ``kwargs`` go to its builder
    (e.g. ``width_multiplier`` for fcn8s / vgg16, ``encoder`` for inception_unet)."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return BASELINES[name](config, **kwargs)
