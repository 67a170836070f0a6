"""UNet built from the improved residual inception block: the paper's second segmentation baseline.

Paper Sec. III-A: "we use the improved inception block for UNet training; which is an
improved version of the original UNet design". So that the comparison with JointSeg is
about cooperative training and not about capacity, the UNet's encoder *is* JointSeg's
encoder M (``jointseg.build_encoder``: same depth, widths, layer names).
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from coopseg.config import ConfigError, ModelConfig
from coopseg.config.methods import INCEPTION_UNET
from coopseg.models.jointseg.blocks import residual_inception_block, upsample_conv_bn
from coopseg.models.jointseg.network import build_encoder

layers = tf.keras.layers


def _expected_encoder_shapes(config: ModelConfig) -> list:
    # Contract of build_encoder: [deep (input / 2**(L+1)), skip_0 (input / 2), ..., skip_{L-1}].
    size = config.input_size
    deep = size // 2 ** (config.num_levels + 1)
    return [(deep, deep)] + [(size // 2 ** (j + 1),) * 2 for j in range(config.num_levels)]


def _check_encoder(encoder: tf.keras.Model, config: ModelConfig) -> None:
    expected = _expected_encoder_shapes(config)
    got = [tuple(t.shape[1:3]) for t in encoder.outputs]
    if got != expected:
        raise ConfigError(
            f"encoder {encoder.name!r} outputs spatial sizes {got}; the Inception-UNet for "
            f"input_size={config.input_size} and {config.num_levels} levels needs {expected} "
            "([deep features, skip_0, ..., skip_{L-1}] as jointseg.build_encoder returns)")
    input_shape = tuple(encoder.inputs[0].shape[1:])
    if input_shape != (config.input_size, config.input_size, 3):
        raise ConfigError(f"encoder {encoder.name!r} takes inputs of shape {input_shape}, "
                          f"expected ({config.input_size}, {config.input_size}, 3)")


def build_inception_unet(config: ModelConfig,
                         encoder: Optional[tf.keras.Model] = None) -> tf.keras.Model:
    """Inception-UNet: JointSeg encoder + UNet decoder of residual inception blocks.

    ``encoder`` defaults to a fresh ``jointseg.build_encoder(config)``; pass one to share
    it. Output: float32 logits [B, H, W, num_seg_classes] at ``config.input_size``.

    The two-step baseline of Table I starts from an encoder trained as a grade
    classifier (JointSeg's ``clf_model`` in ``clf_only`` mode) and receives it by
    ``transfer_encoder_weights(clf_model, unet, prefix="encoder_")`` or, on the encoder
    model itself, ``unet.get_layer("encoder").set_weights(encoder.get_weights())``.

    The decoder is UNet's: per level up a 2x2/stride-2 transposed conv (+BN+ReLU, as the
    JointSeg decoder), concatenation with the encoder map of the same size (the skip),
    and a residual inception block; a final 1x1 conv gives the logits. The encoder's
    stem is already stride 2, so the last up-step (to input resolution) has no skip to
    join. ``config.pag_mode`` and ``config.decoder_block`` are JointSeg options and are
    ignored.

    Example::

        cfg = ModelConfig(input_size=64, stem_filters=8, encoder_filters=(8, 16),
                          encoder_blocks=(1, 1))
        logits = build_inception_unet(cfg)(tf.zeros([1, 64, 64, 3]))  # [1, 64, 64, 7]
    """
    config.validate()
    if encoder is None:
        # The encoder is JointSeg's own builder: the UNet borrows it, layer names included.
        encoder = build_encoder(config)
    _check_encoder(encoder, config)
    kw = dict(bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
              bn_sync=config.sync_batch_norm)

    image = layers.Input((config.input_size, config.input_size, 3), name="image")
    deep, *skips = encoder(image)
    x = deep
    # Deepest skip first; the final step (to input size) has no encoder map.
    skips_up = list(reversed(skips)) + [None]
    for i, (filters, skip) in enumerate(zip(config.resolved_decoder_filters(), skips_up)):
        name = f"unet_up{i}"
        x = upsample_conv_bn(x, filters, name=name, **kw)
        if skip is not None:
            x = layers.Concatenate(name=f"{name}_skip_concat")([x, skip])
        x = residual_inception_block(x, filters, name=f"{name}_block", use_5x5=config.use_5x5,
                                     **kw)
    logits = layers.Conv2D(config.num_seg_classes, 1, dtype="float32", name="unet_logits")(x)
    return tf.keras.Model(image, logits, name=INCEPTION_UNET)
