"""Convolution blocks of JointSeg: conv-BN-ReLU and the two residual inception blocks.

Paper Sec. II-B: "BatchNorm after every conv" (Sec. III), the residual inception block
of Fig. 2 for the encoder, and its convolution-factorised variant of Fig. 3 for the
classifier agent. All are functions on Keras tensors so the models stay functional.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf

from coopseg.models.layers.norm import batch_norm

layers = tf.keras.layers

IntPair = Union[int, Tuple[int, int]]


def conv_bn(x: tf.Tensor, filters: int, kernel: IntPair, *, name: str, strides: int = 1,
            activation: Optional[str] = "relu", bn_momentum: float = 0.99,
            bn_epsilon: float = 1e-3, bn_sync: bool = False) -> tf.Tensor:
    """Conv (no bias: BN's beta replaces it) -> BatchNorm -> optional activation."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn", bn_momentum, bn_epsilon, bn_sync)(x)
    if activation:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def upsample_conv_bn(x: tf.Tensor, filters: int, *, name: str, bn_momentum: float = 0.99,
                     bn_epsilon: float = 1e-3, bn_sync: bool = False) -> tf.Tensor:
    """2x upsampling of the paper's decoder (Sec. II-B): Conv2DTranspose with a 2x2 kernel
    and stride 2, then BN and ReLU."""
    x = layers.Conv2DTranspose(filters, 2, strides=2, use_bias=False,
                               kernel_initializer="he_normal", name=f"{name}_deconv")(x)
    x = batch_norm(f"{name}_deconv_bn", bn_momentum, bn_epsilon, bn_sync)(x)
    return layers.Activation("relu", name=f"{name}_deconv_relu")(x)


def _branch_width(filters: int) -> int:
    # Each of the four inception branches gets a quarter of the block's width (at
    # least 4): the concat is then about `filters` wide before the 3x3 fusion conv.
    return max(4, filters // 4)


def residual_inception_block(x: tf.Tensor, filters: int, *, name: str, use_5x5: bool = False,
                             bn_momentum: float = 0.99, bn_epsilon: float = 1e-3,
                             bn_sync: bool = False) -> tf.Tensor:
    """Improved residual inception block (paper Fig. 2).

    Branches 1x1; 1x1->3x3; 1x1->5x5 (or two 3x3, same receptive field, fewer
    weights); 3x3 conv -> 3x3 max-pool stride 1 (the paper's "additional convolution
    before max-pooling"). The concatenation is fused by a 3x3 conv "to reduce
    aliasing" and added to a 1x1 conv of the block input; both have ``filters``.
    """
    kw = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_sync=bn_sync)
    width = _branch_width(filters)
    b1 = conv_bn(x, width, 1, name=f"{name}_b1_1x1", **kw)
    b2 = conv_bn(x, width, 1, name=f"{name}_b2_1x1", **kw)
    b2 = conv_bn(b2, width, 3, name=f"{name}_b2_3x3", **kw)
    b3 = conv_bn(x, width, 1, name=f"{name}_b3_1x1", **kw)
    if use_5x5:
        b3 = conv_bn(b3, width, 5, name=f"{name}_b3_5x5", **kw)
    else:
        b3 = conv_bn(b3, width, 3, name=f"{name}_b3_3x3a", **kw)
        b3 = conv_bn(b3, width, 3, name=f"{name}_b3_3x3b", **kw)
    b4 = conv_bn(x, width, 3, name=f"{name}_b4_3x3", **kw)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(b4)
    return _fuse_and_add(x, [b1, b2, b3, b4], filters, name=name, **kw)


def factorized_residual_inception_block(x: tf.Tensor, filters: int, *, name: str,
                                        bn_momentum: float = 0.99,
                                        bn_epsilon: float = 1e-3,
                                        bn_sync: bool = False) -> tf.Tensor:
    """Residual inception with convolution factorisation (paper Fig. 3, Inception-v3 [9]).

    Every n x n conv (n > 1) of the block becomes 1 x n followed by n x 1, which
    cuts weights per conv from n^2 to 2n without changing the receptive field.
    """
    kw = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_sync=bn_sync)
    width = _branch_width(filters)

    def factorized(t: tf.Tensor, n: int, tag: str) -> tf.Tensor:
        t = conv_bn(t, width, (1, n), name=f"{name}_{tag}_1x{n}", **kw)
        return conv_bn(t, width, (n, 1), name=f"{name}_{tag}_{n}x1", **kw)

    b1 = conv_bn(x, width, 1, name=f"{name}_b1_1x1", **kw)
    b2 = factorized(conv_bn(x, width, 1, name=f"{name}_b2_1x1", **kw), 3, "b2")
    b3 = conv_bn(x, width, 1, name=f"{name}_b3_1x1", **kw)
    b3 = factorized(factorized(b3, 3, "b3a"), 3, "b3b")
    b4 = factorized(x, 3, "b4")
    b4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(b4)
    return _fuse_and_add(x, [b1, b2, b3, b4], filters, name=name, factorize_fusion=True, **kw)


def _fuse_and_add(x: tf.Tensor, branches: list, filters: int, *, name: str,
                  factorize_fusion: bool = False, bn_momentum: float, bn_epsilon: float,
                  bn_sync: bool = False) -> tf.Tensor:
    kw = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_sync=bn_sync)
    merged = layers.Concatenate(name=f"{name}_concat")(branches)
    if factorize_fusion:
        merged = conv_bn(merged, filters, (1, 3), name=f"{name}_fuse_1x3", **kw)
        merged = conv_bn(merged, filters, (3, 1), name=f"{name}_fuse_3x1", activation=None, **kw)
    else:
        merged = conv_bn(merged, filters, 3, name=f"{name}_fuse_3x3", activation=None, **kw)
    shortcut = conv_bn(x, filters, 1, name=f"{name}_shortcut", activation=None, **kw)
    out = layers.Add(name=f"{name}_add")([merged, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(out)
