"""Colour overlays of class maps on fundus images (TensorBoard summaries, reports)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

# One colour per class index (background black). Lesion colours chosen to be told
# apart on an orange-red retina: MA cyan, haemorrhage blue, exudates yellow/white.
PALETTE = np.array([
    [0, 0, 0],        # background
    [255, 230, 0],    # hard exudate
    [255, 255, 255],  # soft exudate
    [0, 90, 255],     # haemorrhage
    [0, 255, 255],    # microaneurysm
    [180, 0, 255],    # drusen
    [0, 255, 0],      # artifact
    [255, 0, 128], [128, 128, 0], [0, 128, 128], [128, 0, 0], [0, 0, 128],
], dtype=np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """``num_classes`` RGB colours; cycles with a shift past the built-in ones."""
    reps = -(-num_classes // len(PALETTE))
    return np.concatenate([np.roll(PALETTE, i, axis=1) for i in range(reps)])[:num_classes]


def to_display(images: tf.Tensor) -> tf.Tensor:
    """Per-image min-max rescale of standardised images to [0, 1] for display."""
    lo = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return (images - lo) / tf.maximum(hi - lo, 1e-6)


def overlay(images01: tf.Tensor, class_map: tf.Tensor, num_classes: int,
            alpha: float = 0.6) -> tf.Tensor:
    """Blend class colours over [0,1] images where the class is not background/ignore."""
    colours = tf.constant(palette(num_classes), tf.float32) / 255.0
    cm = tf.cast(class_map, tf.int32)
    fg = tf.logical_and(cm > 0, cm < num_classes)
    colour = tf.gather(colours, tf.where(fg, cm, tf.zeros_like(cm)))
    a = alpha * tf.cast(fg, tf.float32)[..., None]
    return images01 * (1.0 - a) + colour * a
