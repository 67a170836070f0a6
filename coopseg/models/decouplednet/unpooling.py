"""Max pooling that keeps its switches, and the unpooling that reuses them (DeconvNet).

DecoupledNet's segmentation network (Hong et al. 2015, Sec. 2.1, built on Noh et al.'s
DeconvNet) upsamples by *unpooling*: each pooled value goes back to the exact position
its max came from in the classification network, every other position is zero.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import tensorflow as tf

layers = tf.keras.layers


def max_pool_with_switches(x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """2x2, stride-2 VALID max pooling; returns (pooled, int64 switches of pooled's shape).

    Switches are flat indices into the pre-pool tensor *including the batch*
    (``include_batch_in_index=True``): index = ((b * H + y) * W + x) * C + c. So a single
    ``tf.scatter_nd`` into a zero vector of size B*H*W*C restores a whole batch, and a
    batch whose images were repeated (one copy per class at inference) stays correct
    because the switches are computed on that same repeated batch.
    """
    return tf.nn.max_pool_with_argmax(x, ksize=2, strides=2, padding="VALID",
                                      include_batch_in_index=True)


def unpool_with_switches(values: tf.Tensor, switches: tf.Tensor,
                         output_shape: Optional[Sequence[int]] = None) -> tf.Tensor:
    """Scatter ``values`` to the positions ``switches`` point at; zeros everywhere else.

    Args:
      values: [B, h, w, C] maps to unpool (same shape as the pooled tensor the
        switches came from).
      switches: int64 [B, h, w, C] flat argmax indices with the batch included.
      output_shape: the pre-pool shape [B, H, W, C]. Default: [B, 2h, 2w, C], exact
        for 2x2/stride-2 pooling of an even-sized map (DecoupledNet inputs are
        multiples of 32, so every VGG pool sees even sizes).
    """
    if output_shape is None:
        dims = tf.shape(values, out_type=tf.int64)
        output_shape = tf.stack([dims[0], 2 * dims[1], 2 * dims[2], dims[3]])
    else:
        output_shape = tf.cast(output_shape, tf.int64)
    # 2x2 stride-2 windows do not overlap, so no two switches collide and scatter_nd's
    # summing of duplicates never happens; its gradient w.r.t. values is a gather.
    flat = tf.scatter_nd(tf.reshape(switches, [-1, 1]), tf.reshape(values, [-1]),
                         tf.reshape(tf.reduce_prod(output_shape), [1]))
    return tf.reshape(flat, output_shape)


class MaxPoolWithArgmax(layers.Layer):
    """Keras layer: 2x2/stride-2 max pooling returning ``(pooled, switches)``."""

    def call(self, inputs: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        return max_pool_with_switches(inputs)

    def compute_output_shape(self, input_shape):
        b, h, w, c = tf.TensorShape(input_shape).as_list()
        pooled = tf.TensorShape([b, None if h is None else h // 2,
                                 None if w is None else w // 2, c])
        return pooled, pooled


class MaxUnpooling2D(layers.Layer):
    """Keras layer: ``[values, switches] -> unpooled`` map of twice the spatial size."""

    def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
        values, switches = inputs
        out = unpool_with_switches(values, switches)
        out.set_shape(_doubled(values.shape))  # keep static shapes for the convs after it
        return out

    def compute_output_shape(self, input_shape):
        return _doubled(input_shape[0])


def _doubled(shape) -> tf.TensorShape:
    b, h, w, c = tf.TensorShape(shape).as_list()
    return tf.TensorShape([b, None if h is None else 2 * h, None if w is None else 2 * w, c])
