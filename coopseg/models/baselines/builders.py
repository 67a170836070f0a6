"""The paper's baselines by name (Tables I-IV): FCN-8s, Inception-UNet and three classifiers.

Each builder lives in its own module; this one re-exports them and builds one by the
method name of its entry in the method table (``coopseg.config.methods``).

    model = build_baseline("fcn8s", ModelConfig(input_size=64), width_multiplier=1 / 16)
"""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from coopseg.config import METHOD_SPECS, ConfigError, ModelConfig
from coopseg.config.methods import resolve
from coopseg.models.baselines.classifiers import (build_inceptionv3_classifier,
                                                  build_vgg16_classifier, build_vgg19_classifier)
from coopseg.models.baselines.fcn8s import bilinear_upsample_initializer, build_fcn8s
from coopseg.models.baselines.inception_unet import build_inception_unet
from coopseg.models.transfer import WeightTransferError, transfer_encoder_weights

__all__ = [
    "BASELINES", "build_baseline", "build_fcn8s",
    "build_inception_unet", "build_vgg16_classifier", "build_vgg19_classifier",
    "build_inceptionv3_classifier", "bilinear_upsample_initializer",
    "transfer_encoder_weights", "WeightTransferError",
]

# The single-network methods of the method table and their Keras builders.
BASELINES: Dict[str, str] = {s.name: s.network for s in METHOD_SPECS.values() if s.network}


def build_baseline(name: str, config: ModelConfig, **kwargs) -> tf.keras.Model:
    """Build the baseline called ``name`` (its table entry's ``network``); ``kwargs`` go
    to its builder (e.g. ``width_multiplier`` for fcn8s / vgg16)."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {sorted(BASELINES)}")
    return resolve(BASELINES[name])(config, **kwargs)
