"""The two agents' costs (paper Eq. 2: softmax cross-entropy for both).

Losses are per-example means divided by the *global* batch size, the convention
``tf.distribute`` needs so that summing replica gradients gives the true mean.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from coopseg.config import IGNORE_LABEL


def classification_loss(labels: tf.Tensor, logits: tf.Tensor,
                        global_batch_size: Optional[int] = None) -> tf.Tensor:
    """Softmax cross-entropy over grades, averaged over the global batch."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def segmentation_loss(masks: tf.Tensor, logits: tf.Tensor,
                      global_batch_size: Optional[int] = None,
                      ignore_label: int = IGNORE_LABEL,
                      class_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Pixel-wise softmax cross-entropy; ``ignore_label`` pixels count for nothing.

    Each image's loss is the (optionally class-weighted) sum over its valid pixels
    divided by their number, so an image that is mostly ignore does not weigh less
    than a fully labelled one. ``class_weights`` [C] scales each pixel by its true
    class's weight (SegNet-style; see ``class_weights.py``).
    """
    masks = tf.cast(masks, tf.int32)
    valid = tf.not_equal(masks, ignore_label)
    safe = tf.where(valid, masks, tf.zeros_like(masks))
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe,
                                                           logits=tf.cast(logits, tf.float32))
    validf = tf.cast(valid, tf.float32)
    if class_weights is not None:
        pixel = pixel * tf.gather(tf.cast(class_weights, tf.float32), safe)
    per_example = (tf.reduce_sum(pixel * validf, axis=[1, 2])
                   / tf.maximum(tf.reduce_sum(validf, axis=[1, 2]), 1.0))
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def l2_penalty(variables, weight_decay: float) -> tf.Tensor:
    """TEFLA-style weight decay: ``wd * sum ||W||^2 / 2`` over conv/dense kernels only
    (not BN scales/offsets or biases), scaled for the number of replicas."""
    kernels = [v for v in variables if "kernel" in v.name]
    if not kernels or weight_decay == 0:
        return tf.constant(0.0)
    total = tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in kernels])
    return tf.nn.scale_regularization_loss(weight_decay * total)
