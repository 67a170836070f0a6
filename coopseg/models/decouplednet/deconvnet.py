"""DeconvNet, DecoupledNet's fully supervised baseline (Hong et al. 2015, Table 1).

"Learning Deconvolution Network for Semantic Segmentation" (Noh, Hong & Han 2015,
arXiv:1505.04366): a VGG-16 encoder whose pools keep their switches and a mirrored
unpooling + deconvolution decoder, per-pixel logits over all classes (background included).
"""
from __future__ import annotations

import tensorflow as tf

from coopseg.config import ExperimentConfig
from coopseg.config.methods import DECONVNET
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.decouplednet.network import VGG16_BLOCK_CONVS, check_buildable
from coopseg.models.decouplednet.unpooling import MaxPoolWithArgmax, MaxUnpooling2D
from coopseg.models.layers.input_adapter import adapt_input

layers = tf.keras.layers


def _conv_bn_relu(x: tf.Tensor, filters: int, kernel: int, name: str, *, batch_norm: bool,
                  transpose: bool = False, padding: str = "same") -> tf.Tensor:
    """(De)convolution -> optional BN -> ReLU, as every DeconvNet layer."""
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = conv(filters, kernel, padding=padding, use_bias=not batch_norm,
             kernel_initializer="he_normal", name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_deconvnet(config: ExperimentConfig) -> tf.keras.Model:
    """Standardised image [B, S, S, 3] -> logits [B, S, S, len(data.class_names)].

    S is ``model.input_size``. Widths follow ``decoupled.vgg_widths()`` and
    ``decoupled.fc_units`` (the DecoupledNet sizes, so the two networks of a Table 1 row
    have the same capacity). fc6 is a convolution whose kernel covers the whole pool5 map
    (7x7 at DeconvNet's 224 px) down to 1x1, and ``fc6_deconv`` its mirror back up, so the
    network has DeconvNet's shape at any multiple of 32. BatchNorm after the VGG-16
    encoder's convolutions (fc6 and fc7 included) when ``model.vgg_batch_norm``: False is
    the published VGG-16, which ``train.backbone_weights`` can start from (fc1/fc2 become
    fc6/fc7 at 224 px), behind the input adapter those weights need (``input_adapter.py``).
    """
    check_buildable(config)
    widths = config.decoupled.vgg_widths()
    fc_units, size = config.decoupled.fc_units, config.model.input_size
    vgg_bn = config.model.vgg_batch_norm
    image = layers.Input((size, size, 3), name="image")
    x, switches = adapt_input(image, input_adapter_kind(config)), []
    # -- encoder: VGG-16 convolutions, pools that remember where each max came from
    for block, (convs, width) in enumerate(zip(VGG16_BLOCK_CONVS, widths), start=1):
        for i in range(1, convs + 1):
            x = _conv_bn_relu(x, width, 3, f"block{block}_conv{i}", batch_norm=vgg_bn)
        x, switch = MaxPoolWithArgmax(name=f"block{block}_pool")(x)
        switches.append(switch)
    # -- fully connected layers as convolutions: pool5 map -> 1x1 -> pool5 map
    pool5_size = size // 32
    x = _conv_bn_relu(x, fc_units, pool5_size, "fc6", batch_norm=vgg_bn, padding="valid")
    x = _conv_bn_relu(x, fc_units, 1, "fc7", batch_norm=vgg_bn)
    # BN after every deconvolution: DeconvNet has it, and training from scratch needs it.
    x = _conv_bn_relu(x, widths[4], pool5_size, "fc6_deconv", batch_norm=True, transpose=True,
                      padding="valid")
    # -- decoder: unpool with the encoder's switches, deconvolve (mirror of VGG-16)
    for block in range(5, 0, -1):
        x = MaxUnpooling2D(name=f"unpool{block}")([x, switches[block - 1]])
        convs = VGG16_BLOCK_CONVS[block - 1]
        for i in range(1, convs + 1):
            last = i == convs and block > 1
            x = _conv_bn_relu(x, widths[block - 2] if last else widths[block - 1], 3,
                              f"deconv{block}_{i}", batch_norm=True, transpose=True)
    # float32 logits also under a mixed-precision policy (numerically safe losses).
    logits = layers.Conv2D(len(config.data.class_names), 1, dtype="float32",
                           name="seg_score")(x)
    return tf.keras.Model(image, logits, name=DECONVNET)
