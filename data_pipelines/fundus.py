"""Fundus-specific preprocessing: retina crop, square resize, Graham normalisation.

Used once, offline, by the converter (``coopseg-convert``; ``prepare_fundus``). Reading
files is ``data_pipelines.imageio``'s job, so the converter and the direct pipeline
decode the same pixels. Images are RGB ``uint8 [H, W, 3]``; masks are ``uint8 [H, W]``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from coopseg.config import IGNORE_LABEL

Box = Tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open like a numpy slice


# --- retina crop ----------------------------------------------------------------------

def crop_box_to_retina(image: np.ndarray, threshold: int = 10,
                       min_area_fraction: float = 0.01) -> Optional[Box]:
    """Bounding box ``(y0, y1, x0, x1)`` of the retina disc, or None if there is none.

    The disc is the largest connected region more than ``threshold`` brighter than
    the border (the darkest corner) in a median-filtered luminance channel: the
    filter removes sensor/JPEG noise in the border, and taking the largest region
    ignores burnt-in text. None when no region covers ``min_area_fraction`` of the
    image (e.g. a black frame).
    """
    height, width = image.shape[:2]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    # Work on a copy of at most ~512 px: the box is as good and large photos stay fast.
    step = max(1, max(height, width) // 512)
    small = gray[::step, ::step]
    # Some cameras leave a gray, noisy border rather than a black one: measure its level
    # in the darkest image corner (corners lie outside the disc even when the disc is
    # cut off at top and bottom) and threshold that far above it.
    c = max(2, min(small.shape) // 20)
    border = min(float(np.median(corner)) for corner in (
        small[:c, :c], small[:c, -c:], small[-c:, :c], small[-c:, -c:]))
    bright = (small > border + threshold).astype(np.uint8)
    # A median filter removes hot pixels and JPEG noise in the border but also rounds
    # off the disc's outermost pixels; those are added back below.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        cv2.medianBlur(bright, 5), connectivity=8)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < min_area_fraction * small.size:
        return None
    disc = cv2.dilate((labels == best).astype(np.uint8), np.ones((5, 5), np.uint8))
    x, y, w, h = cv2.boundingRect(disc & bright)
    # Map back to full resolution, widening by one sample step so no retina is cut off.
    margin = step if step > 1 else 0
    return (max(0, int(y) * step - margin), min(height, int(y + h) * step + margin),
            max(0, int(x) * step - margin), min(width, int(x + w) * step + margin))


def pad_to_square(array: np.ndarray, pad_value: int = 0) -> np.ndarray:
    """Pad the short side equally on both ends so the content stays centred."""
    height, width = array.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.copyMakeBorder(array, top, side - height - top, left, side - width - left,
                              cv2.BORDER_CONSTANT, value=(pad_value,) * 4)


def apply_box(array: np.ndarray, box: Box, pad_value: int = 0) -> np.ndarray:
    """Crop an image or mask to ``box``, then pad to a centred square with ``pad_value``."""
    y0, y1, x0, x1 = box
    return pad_to_square(np.ascontiguousarray(array[y0:y1, x0:x1]), pad_value)


def crop_to_retina(image: np.ndarray, threshold: int = 10) -> np.ndarray:
    """Crop the black border to the retina disc and pad to a centred square.

    Returns the image unchanged when no retina is found (call ``crop_box_to_retina``
    first to tell that case apart and count it).
    """
    box = crop_box_to_retina(image, threshold)
    return image if box is None else apply_box(image, box, 0)


# --- resize and normalise -------------------------------------------------------------

def resize_square(image: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize to ``size x size`` (INTER_AREA antialiases when shrinking photos)."""
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a class-index mask nearest-neighbour, so no new class values appear.

    INTER_NEAREST_EXACT samples pixel centres; plain INTER_NEAREST is shifted by half
    a pixel and would move small lesions relative to the (area-resized) image.
    """
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)


def graham_normalize(image: np.ndarray, scale: Optional[float] = None,
                     disc_fraction: float = 0.9) -> np.ndarray:
    """Ben Graham's local colour normalisation (Kaggle DR 2015).

    ``4 * img - 4 * GaussianBlur(img, sigma=scale / 30) + 128``, saturated to uint8,
    then everything outside ``disc_fraction`` of the disc radius is set to gray 128
    (the disc edge rings after the high-pass filter). ``scale`` is the disc radius in
    pixels; the default ``min(H, W) / 2`` is right for a retina-cropped square image.
    """
    height, width = image.shape[:2]
    radius = float(scale) if scale else min(height, width) / 2.0
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=radius / 30.0)
    out = cv2.addWeighted(image, 4.0, blurred, -4.0, 128.0)  # saturating uint8 result
    inside = np.zeros((height, width), np.uint8)
    cv2.circle(inside, (width // 2, height // 2), int(radius * disc_fraction), 1, -1, cv2.LINE_8)
    out[inside == 0] = 128
    return out


# --- the whole preparation ------------------------------------------------------------

def prepare_fundus(image: np.ndarray, mask: Optional[np.ndarray], size: int,
                   crop_retina: bool = True, threshold: int = 10, graham: bool = False
                   ) -> Tuple[np.ndarray, Optional[np.ndarray], bool]:
    """Retina crop, centred square padding, resize to ``size``, optional Graham.

    Crop the black camera border to the retina disc, pad to a centred square so that
    resizing does not distort the disc, resize, and optionally apply Ben Graham's local
    colour normalisation (Kaggle DR 2015 winner).

    The converter's per-image preprocessing; use it wherever raw fundus
    photos must look like converted ones (e.g. predicting on a folder). The mask, if
    any, gets the same box and nearest-neighbour resizing, and its padding is
    IGNORE_LABEL: those pixels were never photographed. Returns ``(image, mask,
    retina_found)``; without a retina (a black frame) the whole frame is kept.
    """
    box = crop_box_to_retina(image, threshold) if crop_retina else None
    retina_found = box is not None or not crop_retina
    if box is None:
        box = (0, image.shape[0], 0, image.shape[1])
    image = resize_square(apply_box(image, box, 0), size)
    if mask is not None:
        mask = resize_mask(apply_box(mask, box, IGNORE_LABEL), size)
    if graham:
        image = graham_normalize(image)
    return image, mask, retina_found
