"""The two agents' costs (paper Eq. 2: softmax cross-entropy for both).

Losses are per-example means divided by the *global* batch size, the convention
``tf.distribute`` needs so that summing replica gradients gives the true mean.
"""
from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf

from coopseg.config import IGNORE_LABEL, PARTIAL_LABEL_BASE


def classification_loss(labels: tf.Tensor, logits: tf.Tensor,
                        global_batch_size: Optional[int] = None) -> tf.Tensor:
    """Softmax cross-entropy over grades, averaged over the global batch."""
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32))
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def partial_annotation(labels: tf.Tensor, num_classes: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(is_partial [...], annotated [..., C])`` of int labels: which pixels carry a
    partial label (``config.PARTIAL_LABEL_BASE`` + bitmask) and, for those, which classes
    their set annotates (background never; class c when bit c - 1 is set)."""
    labels = tf.cast(labels, tf.int32)
    is_partial = (labels >= PARTIAL_LABEL_BASE) & (labels != IGNORE_LABEL)
    bits = tf.where(is_partial, labels - PARTIAL_LABEL_BASE, 0)
    shifts = tf.range(-1, num_classes - 1, dtype=tf.int32)  # class c -> bit c - 1
    annotated = (tf.bitwise.right_shift(bits[..., None], tf.maximum(shifts, 0)) & 1) > 0
    annotated &= shifts >= 0  # background is never "annotated": it is always possible
    return is_partial, annotated & is_partial[..., None]


def segmentation_loss(masks: tf.Tensor, logits: tf.Tensor,
                      global_batch_size: Optional[int] = None,
                      ignore_label: int = IGNORE_LABEL,
                      class_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Pixel-wise softmax cross-entropy; ``ignore_label`` pixels count for nothing.

    Each image's loss is the (optionally class-weighted) sum over its valid pixels
    divided by their number, so an image that is mostly ignore does not weigh less
    than a fully labelled one. ``class_weights`` [C] scales each pixel by its true
    class's weight (SegNet-style; see ``class_weights.py``).

    A partial label (an unmarked pixel of a partially annotated set) is "background or
    any class the set does not annotate": its loss is the marginal cross-entropy
    ``-log sum p_c`` over those classes (Shi et al., "Marginal loss and exclusion loss for
    partially supervised multi-organ segmentation", Medical Image Analysis 2021,
    arXiv:2007.03868), so no class is taught "absent" where nobody looked for it. It
    carries the background's weight.
    """
    masks = tf.cast(masks, tf.int32)
    logits = tf.cast(logits, tf.float32)
    num_classes = int(logits.shape[-1])
    is_partial, annotated = partial_annotation(masks, num_classes)
    valid = tf.not_equal(masks, ignore_label) & ((masks < num_classes) | is_partial)
    safe = tf.where(valid & ~is_partial, masks, tf.zeros_like(masks))
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    marginal = (tf.reduce_logsumexp(logits, axis=-1)
                - tf.reduce_logsumexp(tf.where(annotated, -1e30, logits), axis=-1))
    pixel = tf.where(is_partial, marginal, pixel)
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
