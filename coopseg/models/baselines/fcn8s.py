"""FCN-8s (Long et al., CVPR 2015) on a VGG-16 trunk: the paper's first segmentation baseline.

Tables I/II of the JointSeg paper compare against FCN-8s from random init and "two-step"
(trunk first trained as a grade classifier). The trunk has exactly the layer names of
``tf.keras.applications.VGG16``, so ``transfer.transfer_encoder_weights(vgg16_clf, fcn,
prefix="block")`` hands it over by name. What we keep and change: ``build_fcn8s``.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from coopseg.config import ConfigError, ModelConfig
from coopseg.config.methods import FCN8S
from coopseg.models.layers import norm
from coopseg.models.layers.input_adapter import adapt_input

layers = tf.keras.layers

# (filters, convs) per VGG-16 block, as in Simonyan & Zisserman, configuration D.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
FC_FILTERS = 4096
FC6_KERNEL = 7  # VGG's fc6 is a 7x7 window over pool5; FCN turns it into a 7x7 conv
FCN_STRIDE = 32  # five 2x2 max-pools


def bilinear_kernel(kernel_size: int) -> np.ndarray:
    """2D bilinear interpolation weights of a ``kernel_size`` x ``kernel_size`` upsampler.

    For an upsampling factor f the FCN kernel size is 2f; with Keras ``padding="same"``
    and stride f this reproduces ``tf.image.resize(..., "bilinear")`` (half-pixel
    centres) away from the border.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1.0 - np.abs(np.arange(kernel_size) - center) / factor
    return np.outer(ramp, ramp).astype(np.float32)


@tf.keras.utils.register_keras_serializable(package="coopseg")
class BilinearUpsampleInitializer(tf.keras.initializers.Initializer):
    """Conv2DTranspose kernel that upsamples each channel bilinearly and mixes none.

    Keras transposed-conv kernels are (kh, kw, out_channels, in_channels); channel c
    gets the bilinear kernel at [:, :, c, c] and zeros elsewhere.
    """

    def __init__(self, kernel_size: int, channels: int):
        self.kernel_size = int(kernel_size)
        self.channels = int(channels)

    def __call__(self, shape, dtype=None, **kwargs):
        expected = (self.kernel_size, self.kernel_size, self.channels, self.channels)
        if tuple(shape) != expected:
            raise ConfigError(
                f"bilinear upsampling kernel must have shape {expected} "
                f"(kernel_size x kernel_size x channels x channels), got {tuple(shape)}")
        weights = np.zeros(expected, dtype=np.float32)
        kernel = bilinear_kernel(self.kernel_size)
        for c in range(self.channels):
            weights[:, :, c, c] = kernel
        return tf.constant(weights, dtype=dtype or tf.float32)

    def get_config(self) -> dict:
        return {"kernel_size": self.kernel_size, "channels": self.channels}


def bilinear_upsample_initializer(kernel_size: int, channels: int) -> BilinearUpsampleInitializer:
    """Keras initializer for a ``channels``-in, ``channels``-out bilinear Conv2DTranspose."""
    return BilinearUpsampleInitializer(kernel_size, channels)


def scaled_width(filters: int, width_multiplier: float) -> int:
    """``filters * width_multiplier`` rounded, at least 1."""
    return max(1, int(round(filters * width_multiplier)))


def _conv(x: tf.Tensor, filters: int, kernel: int, *, name: str, batch_norm: bool,
          config: ModelConfig) -> tf.Tensor:
    # Without BN the layer is keras.applications.VGG16's Conv2D (bias + ReLU inside), so
    # weights of the two are interchangeable by name.
    if not batch_norm:
        return layers.Conv2D(filters, kernel, padding="same", activation="relu", name=name)(x)
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=name)(x)
    x = norm.batch_norm(f"{name}_bn", config.bn_momentum, config.bn_epsilon,
                        config.sync_batch_norm)(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def vgg16_trunk(inputs: tf.Tensor, config: ModelConfig, width_multiplier: float = 1.0,
                batch_norm: bool = True) -> Dict[str, tf.Tensor]:
    """VGG-16 convolutional trunk with keras.applications layer names (``block1_conv1``
    ... ``block5_pool``), shared layer for layer by FCN-8s and the VGG-16 pre-trainer
    (``classifiers.build_vgg16_classifier``).

    Returns the five pooled maps as ``{"block1_pool": ..., ..., "block5_pool": ...}``.
    """
    x = inputs
    pools = {}
    for b, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            x = _conv(x, scaled_width(filters, width_multiplier), 3, name=f"block{b}_conv{i}",
                      batch_norm=batch_norm, config=config)
        x = layers.MaxPooling2D(2, strides=2, name=f"block{b}_pool")(x)
        pools[f"block{b}_pool"] = x
    return pools


def _score(x: tf.Tensor, classes: int, name: str) -> tf.Tensor:
    return layers.Conv2D(classes, 1, kernel_initializer="zeros", name=name)(x)


def _upsample(x: tf.Tensor, classes: int, factor: int, name: str) -> tf.Tensor:
    kernel = 2 * factor
    return layers.Conv2DTranspose(
        classes, kernel, strides=factor, padding="same", use_bias=False,
        kernel_initializer=bilinear_upsample_initializer(kernel, classes), name=name)(x)


def check_vgg_input_size(config: ModelConfig, what: str) -> None:
    """VGG-16 pools five times; with "same" padding the skips align only at multiples of 32."""
    if config.input_size < FCN_STRIDE or config.input_size % FCN_STRIDE:
        raise ConfigError(
            f"{what} needs model.input_size to be a positive multiple of {FCN_STRIDE} "
            f"(five 2x2 pools), got {config.input_size}")


def build_fcn8s(config: ModelConfig, width_multiplier: float = 1.0, batch_norm: bool = True,
                fc6_kernel: int = FC6_KERNEL, dropout: float = 0.5,
                input_adapter: str = "") -> tf.keras.Model:
    """FCN-8s: VGG-16 trunk, fc6/fc7 as convs, skips from pool4 and pool3.

    Output: float32 logits [B, H, W, num_seg_classes] at ``config.input_size``.

    Choices the FCN paper fixes and we keep: fc6 is a 7x7 conv and fc7 a 1x1 conv, each
    followed by dropout 0.5; class-scoring 1x1 convs on fc7, pool4 and pool3 are
    zero-initialised (Long et al. Sec. 4.1/4.2: random init gave "neither better
    performance nor faster convergence", and a zero skip starts the net as FCN-32s);
    upsampling is a learnable Conv2DTranspose initialised to bilinear interpolation.
    Choices that differ, and why:

    - ``padding="same"`` everywhere instead of Caffe's pad-100 + crop layers: the score
      maps then land exactly on pool4/pool3/input sizes, so the input must divide by 32.
    - ``batch_norm=True`` (default, ``model.vgg_batch_norm``) puts BatchNorm after every
      conv, as the paper's TEFLA setup does for all its nets (JointSeg paper Sec. III);
      original FCN has none. It is also what makes a from-scratch VGG trainable at a few
      CPU steps. With BN the convs drop their bias (BN's beta replaces it), so the
      weights are no longer shape-compatible with the ImageNet VGG-16 file;
      ``batch_norm=False`` is the published conv + bias net, which
      ``train.backbone_weights`` can start from (``coopseg.models.backbone_weights``;
      fc1/fc2 become the 7x7 fc6 and 1x1 fc7).
    - ``input_adapter``: "" (default, no such layer) or an ``input_adapter.ADAPTERS``
      kind ("caffe" with ImageNet weights) before the trunk.
    - ``width_multiplier`` scales every VGG width and fc6/fc7 (4096) so tests and CPU
      runs can use small nets; 1.0 is the original FCN-8s (about 134 M parameters).

    Example::

        model = build_fcn8s(ModelConfig(input_size=64), width_multiplier=1 / 16)
        logits = model(tf.zeros([2, 64, 64, 3]))  # [2, 64, 64, 7]
    """
    check_vgg_input_size(config, "FCN-8s")
    if width_multiplier <= 0:
        raise ConfigError(f"FCN-8s width_multiplier must be > 0, got {width_multiplier}")
    classes = config.num_seg_classes
    size = config.input_size
    inputs = tf.keras.Input((size, size, 3), name="image")
    pools = vgg16_trunk(adapt_input(inputs, input_adapter), config, width_multiplier, batch_norm)

    # fc6/fc7 of the VGG classifier, convolutionalised (Long et al. Sec. 3.1).
    fc_width = scaled_width(FC_FILTERS, width_multiplier)
    x = _conv(pools["block5_pool"], fc_width, fc6_kernel, name="fc6", batch_norm=batch_norm,
              config=config)
    x = layers.Dropout(dropout, name="fc6_dropout")(x)
    x = _conv(x, fc_width, 1, name="fc7", batch_norm=batch_norm, config=config)
    x = layers.Dropout(dropout, name="fc7_dropout")(x)

    # Coarse scores, then 2x + pool4 scores, 2x + pool3 scores, 8x to the input.
    x = _score(x, classes, "score_fr")
    x = _upsample(x, classes, 2, "upscore2")
    x = layers.Add(name="fuse_pool4")([x, _score(pools["block4_pool"], classes, "score_pool4")])
    x = _upsample(x, classes, 2, "upscore_pool4")
    x = layers.Add(name="fuse_pool3")([x, _score(pools["block3_pool"], classes, "score_pool3")])
    x = _upsample(x, classes, 8, "upscore8")
    # float32 logits even under a mixed-precision policy: the softmax CE needs them.
    logits = layers.Activation("linear", dtype="float32", name="seg_logits")(x)
    return tf.keras.Model(inputs, logits, name=FCN8S)
