"""Whole-image segmentation by overlapping tiles blended with Gaussian weights (nnU-Net).

A segmenter trained on patches of images held at a larger working resolution segments a
whole image at that resolution: tiles of its input size, half overlapping, each tile's
softmax weighted by a Gaussian that trusts tile centres most, summed and renormalised.
"""
from __future__ import annotations

import math
from typing import Callable, List

import numpy as np
import tensorflow as tf

# nnU-Net's choices (Isensee et al., "nnU-Net", Nature Methods 2021,
# doi:10.1038/s41592-020-01008-z): tiles overlap by half, the Gaussian's sigma is 1/8
# of the tile side.
DEFAULT_OVERLAP = 0.5
SIGMA_FRACTION = 1.0 / 8.0


def tile_starts(length: int, tile: int, overlap: float = DEFAULT_OVERLAP) -> List[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least
    ``overlap`` of a tile shared by neighbours; the first starts at 0, the last ends at
    ``length``, the rest are spread evenly. One tile when ``length <= tile``."""
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    count = math.ceil((length - tile) / step) + 1
    return sorted({int(round(k * (length - tile) / (count - 1))) for k in range(count)})


def gaussian_importance(tile: int, sigma_fraction: float = SIGMA_FRACTION) -> np.ndarray:
    """``[tile, tile]`` float32 weights, 1 at the centre, never below a small floor (so
    every pixel of an image has weight)."""
    centre = (tile - 1) / 2.0
    axis = np.exp(-((np.arange(tile) - centre) ** 2) / (2.0 * (tile * sigma_fraction) ** 2))
    weights = np.outer(axis, axis)
    return np.maximum(weights / weights.max(), 1e-3).astype(np.float32)


def sliding_window_probabilities(
    probabilities_fn: Callable[[tf.Tensor], tf.Tensor],
    images: tf.Tensor,
    tile: int,
    overlap: float = DEFAULT_OVERLAP,
    tiles_per_call: int = 1,
) -> tf.Tensor:
    """Per-pixel class probabilities ``[N, H, W, C]`` of images ``[N, H, W, 3]`` of any
    static size, from ``probabilities_fn`` (``[n, tile, tile, 3]`` -> ``[n, tile, tile,
    C]`` softmax) applied to overlapping tiles.

    Images smaller than a tile on a side are padded with zeros to the tile and the
    padding is cut off again. ``tiles_per_call`` tile positions share one model call
    (their tiles batched together): more uses the hardware better and needs more memory.
    Where the image is exactly one tile, the result is ``probabilities_fn(images)``.
    """
    height, width = int(images.shape[1]), int(images.shape[2])
    pad_h, pad_w = max(0, tile - height), max(0, tile - width)
    if pad_h or pad_w:
        images = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    full_h, full_w = height + pad_h, width + pad_w
    positions = [(y, x) for y in tile_starts(full_h, tile, overlap)
                 for x in tile_starts(full_w, tile, overlap)]
    if len(positions) == 1:
        return probabilities_fn(images)[:, :height, :width]
    importance = gaussian_importance(tile)
    weights = tf.constant(importance)[None, :, :, None]
    total, norm = None, np.zeros((full_h, full_w), np.float32)
    for start in range(0, len(positions), max(1, tiles_per_call)):
        group = positions[start:start + max(1, tiles_per_call)]
        tiles = tf.concat([images[:, y:y + tile, x:x + tile] for y, x in group], axis=0)
        probs = tf.split(tf.cast(probabilities_fn(tiles), tf.float32), len(group), axis=0)
        for (y, x), p in zip(group, probs):
            placed = tf.pad(p * weights, [[0, 0], [y, full_h - y - tile],
                                          [x, full_w - x - tile], [0, 0]])
            total = placed if total is None else total + placed
            norm[y:y + tile, x:x + tile] += importance
    blended = total / tf.constant(norm)[None, :, :, None]
    return blended[:, :height, :width]


def segment_probabilities(seg_model: tf.keras.Model, images: tf.Tensor,
                          overlap: float = DEFAULT_OVERLAP, tiles_per_call: int = 1) -> tf.Tensor:
    """Softmax probabilities of ``seg_model`` (logits out) on standardised images of any
    static size: one call where they have the model's input size, overlapping tiles
    otherwise.

    Each tile is standardised again on its own, as each training patch was (per-image
    standardisation undoes any earlier one, so this equals standardising the raw tile)."""
    tile = model_input_side(seg_model)

    def probabilities(batch: tf.Tensor) -> tf.Tensor:
        logits = seg_model(batch, training=False)
        return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

    if tile is None or (int(images.shape[1]) == tile and int(images.shape[2]) == tile):
        return probabilities(images)
    return sliding_window_probabilities(
        lambda tiles: probabilities(tf.image.per_image_standardization(tiles)), images, tile,
        overlap, tiles_per_call)


def model_input_side(model: tf.keras.Model):
    """The fixed side of a model's square input, or None for a model that takes any size
    (a subclassed model without a declared input)."""
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    side = shape[1] if isinstance(shape, tuple) else None
    return int(side) if side is not None else None
