"""Grade classifiers: the paper's VGG-19 / InceptionV3 baselines and the VGG-16 encoder pre-trainer.

Table III/IV compare the classifier agent with VGG-19 and InceptionV3 (paper Sec. III-A),
built by ``tf.keras.applications`` with ``weights=None`` (nothing is downloaded).
``build_vgg16_classifier`` is the first step of the paper's "two-step" FCN-8s.
"""
from __future__ import annotations

import tensorflow as tf

from coopseg.config import ConfigError, ModelConfig
from coopseg.config.methods import INCEPTIONV3_BACKBONE, VGG16_BACKBONE, VGG19_BACKBONE
from coopseg.models.baselines.fcn8s import check_vgg_input_size, vgg16_trunk
from coopseg.models.layers.input_adapter import adapt_input

layers = tf.keras.layers

# keras.applications rejects smaller inputs: InceptionV3's stem and five reductions
# need 75 px, VGG's five pools need 32 px.
INCEPTIONV3_MIN_SIZE = 75
VGG_MIN_SIZE = 32


def _grade_head(features: tf.Tensor, config: ModelConfig, prefix: str) -> tf.Tensor:
    """Global average pool -> dropout -> dense ``num_grades`` logits (float32)."""
    x = layers.GlobalAveragePooling2D(name=f"{prefix}_gap")(features)
    x = layers.Dropout(config.classifier_dropout, name=f"{prefix}_dropout")(x)
    return layers.Dense(config.num_grades, dtype="float32", name=f"{prefix}_logits")(x)


def build_vgg16_classifier(config: ModelConfig, width_multiplier: float = 1.0,
                           batch_norm: bool = True, input_adapter: str = "") -> tf.keras.Model:
    """VGG-16 trunk (same layers as FCN-8s) + GAP + dense ``num_grades`` logits.

    The first step of the paper's "two-step" FCN-8s (Table I: "parameters were
    initialized with a pre-trained model; trained on eyepacs classification set"): it
    shares the FCN-8s VGG-16 trunk layer for layer, so its ``block*`` weights move to
    FCN-8s by name.

    ``input_adapter``: "" (none) or an ``input_adapter.ADAPTERS`` kind before the trunk.
    """
    check_vgg_input_size(config, "the VGG-16 classifier")
    if width_multiplier <= 0:
        raise ConfigError(f"VGG-16 width_multiplier must be > 0, got {width_multiplier}")
    size = config.input_size
    inputs = tf.keras.Input((size, size, 3), name="image")
    pools = vgg16_trunk(adapt_input(inputs, input_adapter), config, width_multiplier, batch_norm)
    logits = _grade_head(pools["block5_pool"], config, VGG16_BACKBONE)
    return tf.keras.Model(inputs, logits, name="vgg16_classifier")


def _check_min_size(config: ModelConfig, minimum: int, what: str) -> None:
    if config.input_size < minimum:
        raise ConfigError(
            f"{what} needs model.input_size >= {minimum} px, got {config.input_size}")


def build_vgg19_classifier(config: ModelConfig, input_adapter: str = "") -> tf.keras.Model:
    """``keras.applications.VGG19`` (random init, no top) + GAP + dense ``num_grades`` logits.

    VGG-19 and InceptionV3 were designed for their own input preprocessing (caffe-style
    mean subtraction, or scaling to [-1, 1]); we feed the paper's per-image standardised
    images instead (Sec. III: "each image is standardized by its mean and dividing its
    standard deviation"). From random init that is harmless (the first BatchNorm / conv
    learns any affine rescaling) and it keeps one input pipeline for all methods.

    ``input_adapter``: "" (none) or an ``input_adapter.ADAPTERS`` kind before the trunk:
    a model started from ImageNet weights (``train.backbone_weights``) gets "caffe" for
    the VGGs, "inception" for InceptionV3, a first layer that maps the standardised image
    to the scale and channel order those weights expect.
    """
    _check_min_size(config, VGG_MIN_SIZE, "VGG-19")
    size = config.input_size
    inputs = tf.keras.Input((size, size, 3), name="image")
    # input_tensor= puts VGG19's layers directly into this model (no nested sub-model),
    # so they can be found and transferred by their usual names.
    trunk = tf.keras.applications.VGG19(include_top=False, weights=None,
                                        input_tensor=adapt_input(inputs, input_adapter))
    logits = _grade_head(trunk.output, config, VGG19_BACKBONE)
    return tf.keras.Model(inputs, logits, name="vgg19_classifier")


def build_inceptionv3_classifier(config: ModelConfig, input_adapter: str = "") -> tf.keras.Model:
    """``keras.applications.InceptionV3`` (random init, no top) + GAP + dense logits.

    ``input_adapter``: "" (none) or an ``input_adapter.ADAPTERS`` kind before the trunk
    (input scale: see ``build_vgg19_classifier``).
    """
    _check_min_size(config, INCEPTIONV3_MIN_SIZE, "InceptionV3")
    size = config.input_size
    inputs = tf.keras.Input((size, size, 3), name="image")
    trunk = tf.keras.applications.InceptionV3(include_top=False, weights=None,
                                              input_tensor=adapt_input(inputs, input_adapter))
    logits = _grade_head(trunk.output, config, INCEPTIONV3_BACKBONE)
    return tf.keras.Model(inputs, logits, name="inceptionv3_classifier")
