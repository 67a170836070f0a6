"""Colour overlays of class maps on fundus images (TensorBoard summaries, reports)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

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


# --------------------------------------------------------------- numpy (PNG output)

def overlay_rgb(image: np.ndarray, class_map: np.ndarray, num_classes: int,
                alpha: float = 0.6) -> np.ndarray:
    """``overlay`` for one uint8 RGB image ``[H, W, 3]`` and an int class map ``[h, w]``.

    The class map is scaled to the image nearest-neighbour, so a 224 px prediction
    can be shown on a larger photo without inventing classes at lesion borders.
    """
    import cv2
    if not 2 <= num_classes <= 255:
        raise ValueError(f"overlay_rgb draws 2..255 classes, got {num_classes}")
    height, width = image.shape[:2]
    # Values outside the classes (e.g. 255 = ignore) become "no colour" first.
    cm = np.asarray(class_map)
    cm = np.where((cm > 0) & (cm < num_classes), cm, 0).astype(np.uint8)
    if cm.shape != (height, width):
        cm = cv2.resize(cm, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    # OpenCV's uint8 LUT and blend: ~5x faster than numpy fancy indexing and float
    # arithmetic on a 512 px photo, and coopseg-predict draws one per photo.
    table = np.zeros((256, 1, 3), np.uint8)
    table[:num_classes, 0] = palette(num_classes)
    colour = cv2.LUT(cv2.merge([cm, cm, cm]), table)
    blended = cv2.addWeighted(np.ascontiguousarray(image), 1.0 - alpha, colour, alpha, 0.0)
    return np.where((cm > 0)[..., None], blended, image)


# Warnings in a legend wrap at this text width (px), so one long reason does not make
# the panel wider than the photo it annotates.
LEGEND_WARNING_WIDTH = 240
LEGEND_WARNING_TEXT = (170, 0, 0)  # dark red: readable on the band below and on white
LEGEND_WARNING_BAND = (255, 228, 228)  # pale red behind warning rows, so they stand out


def _wrap(text: str, width: int, font: int, scale: float, thickness: int) -> List[str]:
    """``text`` split at spaces into lines at most ``width`` px wide (a longer word
    gets a line of its own); continuation lines are indented."""
    import cv2
    lines: List[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if line and cv2.getTextSize(candidate, font, scale, thickness)[0][0] > width:
            lines.append(line)
            line = "  " + word
        else:
            line = candidate
    return lines + [line]


def add_legend(image: np.ndarray, entries: Sequence[Tuple[str, Optional[int]]],
               num_classes: int, title: str = "", warnings: Sequence[str] = ()) -> np.ndarray:
    """The image with a legend panel on its right: a title line, then ``warnings`` in red
    on a pale red band (each wrapped at ``LEGEND_WARNING_WIDTH`` px), then one row per
    ``(text, class_index)`` with that class's colour swatch (``None``: text only).

    Returns a new uint8 RGB image, as tall as ``image`` or the legend, whichever is taller.
    """
    import cv2
    colours = palette(num_classes)
    font, scale, thickness, row = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1, 20

    def width_of(text: str) -> int:
        return cv2.getTextSize(text, font, scale, thickness)[0][0]

    plain = ([(title, None)] if title else []) + list(entries)
    text_width = max([width_of(text) for text, _ in plain] + [60])
    # Warnings may widen the panel up to the wrap width, never past it.
    wrap_at = max(text_width, min(LEGEND_WARNING_WIDTH,
                                  max([width_of(w) for w in warnings] + [0])))
    warning_lines = [line for w in warnings for line in _wrap(w, wrap_at, font, scale, thickness)]
    text_width = max([text_width] + [width_of(line) for line in warning_lines])
    # (text, class index, is a warning): title first, then warnings, then the entries.
    lines = [(title, None, False)] if title else []
    lines += [(line, None, True) for line in warning_lines]
    lines += [(text, index, False) for text, index in entries]
    panel_w = text_width + 40
    height = max(image.shape[0], row * len(lines) + 10)
    canvas = np.full((height, image.shape[1] + panel_w, 3), 255, np.uint8)
    canvas[:image.shape[0], :image.shape[1]] = image
    x0 = image.shape[1] + 8
    for i, (text, index, warning) in enumerate(lines):
        y = 8 + row * i
        if warning:
            cv2.rectangle(canvas, (image.shape[1] + 2, y - 1), (canvas.shape[1] - 3, y + row - 2),
                          LEGEND_WARNING_BAND, -1)
        if index is not None:
            cv2.rectangle(canvas, (x0, y + 2), (x0 + 14, y + 14),
                          tuple(int(c) for c in colours[index]), -1)
            cv2.rectangle(canvas, (x0, y + 2), (x0 + 14, y + 14), (90, 90, 90), 1)
        cv2.putText(canvas, text, (x0 + (20 if index is not None else 0), y + 13), font, scale,
                    LEGEND_WARNING_TEXT if warning else (0, 0, 0), thickness, cv2.LINE_AA)
    return canvas
