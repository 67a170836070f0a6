"""Stage 2 of the input pipelines: the paper's preprocessing and augmentation, in-graph.

JointSeg paper Sec. III (trained with TEFLA): resize to 256, random 224 crop, flips,
random padding, colour jitter for the classifier only, per-image standardisation last;
TEFLA's affine warp optionally. Every random draw is stateless, derived from one
per-example ``seed`` (shape [2]) that ``pipeline.py`` supplies. Each step: docs/data.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_addons as tfa  # only tfa.image.transform: TEFLA's affine warp

from coopseg.config import IGNORE_LABEL, ConfigError, DataConfig


# The four colour operations of TEFLA's distort_color, in the orders of its four
# ``color_ordering`` cases (tefla/da/preprocessor.py, InceptionPreprocessor).
TEFLA_COLOR_ORDERINGS: Tuple[Tuple[str, ...], ...] = (
    ("brightness", "saturation", "hue", "contrast"),
    ("saturation", "brightness", "contrast", "hue"),
    ("contrast", "hue", "brightness", "saturation"),
    ("hue", "saturation", "contrast", "brightness"),
)


@dataclass(frozen=True)
class ColorJitter:
    """Colour augmentation of the classifier's images, on [0, 1] pixel values, clipped.

    Each image gets every operation whose range is non-trivial, in one of ``orderings``
    drawn per image. ``brightness`` is an additive delta, ``hue`` a fraction of the hue
    circle, ``saturation`` and ``contrast`` multiplicative ranges. Presets:
    ``COLOR_JITTER_PRESETS`` (``DataConfig.color_jitter``).
    """

    brightness: float = 0.0
    saturation: Tuple[float, float] = (1.0, 1.0)
    hue: float = 0.0
    contrast: Tuple[float, float] = (1.0, 1.0)
    orderings: Tuple[Tuple[str, ...], ...] = (TEFLA_COLOR_ORDERINGS[0],)


# TEFLA's distort_color (fast_mode=False): brightness +-32/255, saturation x0.5..1.5,
# hue +-0.2 (+-72 degrees), contrast x0.5..1.5, one of its four orderings per image.
TEFLA_COLOR_JITTER = ColorJitter(brightness=32.0 / 255.0, saturation=(0.5, 1.5), hue=0.2,
                                 contrast=(0.5, 1.5), orderings=TEFLA_COLOR_ORDERINGS)
COLOR_JITTER_PRESETS: Dict[str, Optional[ColorJitter]] = {
    "tefla": TEFLA_COLOR_JITTER,
    # What the paper names (Sec. III: "hue, contrast and saturation"), at TEFLA's ranges.
    "paper": ColorJitter(saturation=(0.5, 1.5), hue=0.2, contrast=(0.5, 1.5),
                         orderings=(("saturation", "hue", "contrast"),)),
    # TEFLA's hue turns a red haemorrhage green and its contrast range can wipe out a
    # faint exudate; these narrower ranges keep lesion colours recognisable.
    "mild": ColorJitter(brightness=32.0 / 255.0, saturation=(0.75, 1.25), hue=0.04,
                        contrast=(0.75, 1.25)),
    "none": None,
}


def color_jitter(preset: str) -> Optional[ColorJitter]:
    """The ``ColorJitter`` of a ``DataConfig.color_jitter`` preset (None = no jitter)."""
    if preset not in COLOR_JITTER_PRESETS:
        raise ConfigError(f"data.color_jitter={preset!r}; choose one of "
                          f"{tuple(COLOR_JITTER_PRESETS)}")
    return COLOR_JITTER_PRESETS[preset]


@dataclass(frozen=True)
class AffineRanges:
    """TEFLA-style random affine perturbation (its kaggle_diabetic settings, scaled).

    Fundus photos have no canonical orientation, hence any rotation; zoom is drawn
    log-uniformly so zooming in and out are equally likely.
    """

    rotation_degrees: float = 180.0
    zoom: Tuple[float, float] = (1.0 / 1.15, 1.15)
    shear_degrees: float = 10.0
    translation_fraction: float = 0.08  # of the image side, per axis


# ----------------------------------------------------------------------------- resize

def pad_to_square(image: tf.Tensor, value: int) -> tf.Tensor:
    """Pad the short side of ``[H, W]`` or ``[H, W, C]`` equally on both ends with
    ``value``, content centred (``data_pipelines.fundus.pad_to_square`` in TF ops)."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    side = tf.maximum(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    paddings = [[top, side - height - top], [left, side - width - left]]
    if image.shape.rank == 3:
        paddings.append([0, 0])
    return tf.pad(image, paddings, constant_values=tf.cast(value, image.dtype))


def resize_image(image: tf.Tensor, size: int) -> tf.Tensor:
    """A uint8 image as ``size x size``: padded to a centred black square, then resized,
    bilinear with antialiasing, back to uint8.

    A photo is never distorted: a 1024 x 683 fundus photo keeps a round retina (black
    bars above and below, like the black frame around any retina) where a plain resize
    would stretch it into an ellipse and change its grade. Square images, the converter's
    retina crops and the synthetic set, are resized as before. Antialiasing makes a
    large downscale (a 3000 px photo to 256) average over each output pixel's footprint.
    """
    square = pad_to_square(image, 0)
    resized = tf.image.resize(square, [size, size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def resize_mask(mask: tf.Tensor, size: int) -> tf.Tensor:
    """A class-index mask ``[H, W]`` as ``size x size``: padded like ``resize_image``
    with the ignore label (the padding is no photo: neither trained on nor scored), then
    resized nearest-neighbour (never blends classes)."""
    square = pad_to_square(mask, IGNORE_LABEL)
    resized = tf.image.resize(square[:, :, None], [size, size], method="nearest")
    return resized[:, :, 0]


def photo_region(size: int, height: int, width: int) -> Tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: where a ``height x width`` photo lies in its ``size x size``
    view made by ``resize_image`` (the rest is padding)."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    scale = size / side
    return (int(round(top * scale)), int(round((top + height) * scale)),
            int(round(left * scale)), int(round((left + width) * scale)))


# --------------------------------------------------------------------------- geometry

def random_affine_transform(seed: tf.Tensor, height: int, width: int,
                            ranges: AffineRanges) -> tf.Tensor:
    """A random affine map about the image centre as the 8 ``tfa.image.transform`` params.

    The forward map is centre -> zoom -> shear -> rotation -> translation -> uncentre;
    tfa wants the inverse (output pixel -> input pixel), hence the matrix inverse.
    """
    draws = tf.random.stateless_uniform([5], seed, minval=-1.0, maxval=1.0)
    angle = draws[0] * math.radians(ranges.rotation_degrees)
    shear = draws[1] * math.radians(ranges.shear_degrees)
    log_low, log_high = math.log(ranges.zoom[0]), math.log(ranges.zoom[1])
    zoom = tf.exp(log_low + (draws[2] + 1.0) / 2.0 * (log_high - log_low))
    shift_x = draws[3] * ranges.translation_fraction * width
    shift_y = draws[4] * ranges.translation_fraction * height
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0

    def matrix(rows: List[List]) -> tf.Tensor:
        return tf.stack([tf.stack([tf.cast(v, tf.float32) for v in row]) for row in rows])

    zero, one = 0.0, 1.0
    uncenter = matrix([[one, zero, -cx], [zero, one, -cy], [zero, zero, one]])
    scale = matrix([[zoom, zero, zero], [zero, zoom, zero], [zero, zero, one]])
    shear_m = matrix([[one, tf.tan(shear), zero], [zero, one, zero], [zero, zero, one]])
    rotate = matrix([[tf.cos(angle), -tf.sin(angle), zero],
                     [tf.sin(angle), tf.cos(angle), zero], [zero, zero, one]])
    recenter = matrix([[one, zero, cx + shift_x], [zero, one, cy + shift_y], [zero, zero, one]])
    forward = recenter @ rotate @ shear_m @ scale @ uncenter
    inverse = tf.linalg.inv(forward)
    inverse = inverse / inverse[2, 2]
    return tf.reshape(inverse, [9])[:8]


def _random_offsets(seed: tf.Tensor, slack: tf.Tensor) -> tf.Tensor:
    """Uniform integer offsets in [0, slack] per axis (``slack`` has shape [2])."""
    draws = tf.random.stateless_uniform([2], seed)
    return tf.cast(tf.floor(draws * tf.cast(slack + 1, tf.float32)), tf.int32)


def _crop(tensors: List[tf.Tensor], offsets: tf.Tensor, size: int) -> List[tf.Tensor]:
    return [t[offsets[0]:offsets[0] + size, offsets[1]:offsets[1] + size, :] for t in tensors]


def random_geometry(
    image: tf.Tensor,
    mask: Optional[tf.Tensor],
    seed: tf.Tensor,
    *,
    crop_size: int,
    flip_left_right: bool,
    flip_up_down: bool,
    random_pad: int,
    affine: Optional[AffineRanges] = None,
) -> Tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Optional affine warp, random crop, flips and random padding, shared by image and mask.

    ``image`` is float ``[H, W, 3]`` (H, W >= crop_size), ``mask`` uint8 ``[H, W]`` or
    None. Each random draw is made once and applied to both, so they stay aligned;
    only the affine warp interpolates, bilinear for the image and nearest for the mask.
    Random padding (paper Sec. III) pads ``random_pad`` zeros on every side and crops
    back to ``crop_size``: a random translation of up to +-random_pad pixels.

    Where padding, rotation or zoom expose area outside the picture, the image is filled
    with black and the mask with 0 (background), not 255 (ignore): a fundus photo's
    border is black background already, so the filled area looks like what it is.
    """
    affine_seed, crop_seed, flip_seed, pad_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    tensors = [image] if mask is None else [image, mask[:, :, None]]
    if affine is not None:
        height, width = image.shape[0], image.shape[1]
        if height is None or width is None:
            height, width = crop_size, crop_size  # only used to scale the translation
        transform = random_affine_transform(affine_seed, height, width, affine)
        tensors = [tfa.image.transform(t, transform, interpolation=method, fill_value=0)
                   for t, method in zip(tensors, ("bilinear", "nearest"))]
    slack = tf.shape(image)[:2] - crop_size
    tensors = _crop(tensors, _random_offsets(crop_seed, slack), crop_size)
    # Both coins are drawn even when a flip is off, so turning one flip off leaves the
    # other flip's (and every later) draw of the image unchanged.
    flip_lr, flip_ud = tf.unstack(tf.random.stateless_uniform([2], flip_seed) < 0.5)
    for enabled, coin, axis in ((flip_left_right, flip_lr, 1), (flip_up_down, flip_ud, 0)):
        if enabled:
            tensors = [tf.cond(coin, lambda t=t: tf.reverse(t, [axis]), lambda t=t: t)
                       for t in tensors]
    if random_pad > 0:
        padding = [[random_pad, random_pad], [random_pad, random_pad], [0, 0]]
        tensors = [tf.pad(t, padding) for t in tensors]
        offsets = _random_offsets(pad_seed, tf.constant([2 * random_pad, 2 * random_pad]))
        tensors = _crop(tensors, offsets, crop_size)
    tensors = [tf.ensure_shape(t, [crop_size, crop_size, t.shape[-1]]) for t in tensors]
    return tensors[0], (None if mask is None else tensors[1][:, :, 0])


def sample_patch(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, size: int,
                 foreground_fraction: float, num_classes: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """A ``size`` x ``size`` patch of an image ``[H, W, 3]`` and its mask ``[H, W]``
    (H, W >= size): with probability ``foreground_fraction`` centred on a random lesion
    pixel (a class in 1..num_classes-1; uniform when the mask has none), else at a
    uniform offset. Lesions cover a few per cent of a fundus photo, so uniform patches
    alone would rarely show the segmenter one (nnU-Net's foreground oversampling)."""
    coin_seed, pixel_seed, offset_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    shape = tf.shape(mask)
    slack = shape[:2] - size
    uniform = _random_offsets(offset_seed, slack)
    labels = tf.cast(mask, tf.int32)
    lesion = tf.cast(tf.where((labels > 0) & (labels < num_classes)), tf.int32)
    count = tf.shape(lesion)[0]
    pick = tf.minimum(tf.cast(tf.random.stateless_uniform([], pixel_seed) *
                              tf.cast(count, tf.float32), tf.int32), tf.maximum(count - 1, 0))
    centred = tf.clip_by_value(tf.gather(tf.concat([lesion, [[0, 0]]], 0), pick) - size // 2,
                               0, slack)
    use_lesion = (tf.random.stateless_uniform([], coin_seed) < foreground_fraction) & (count > 0)
    offsets = tf.where(use_lesion, centred, uniform)
    patch = image[offsets[0]:offsets[0] + size, offsets[1]:offsets[1] + size]
    patch_mask = mask[offsets[0]:offsets[0] + size, offsets[1]:offsets[1] + size]
    return (tf.ensure_shape(patch, [size, size, image.shape[-1]]),
            tf.ensure_shape(patch_mask, [size, size]))


# ------------------------------------------------------------------ colour, standardise

def _color_op(image: tf.Tensor, op: str, jitter: ColorJitter, seed: tf.Tensor) -> tf.Tensor:
    if op == "brightness":
        return tf.image.stateless_random_brightness(image, jitter.brightness, seed)
    if op == "saturation":
        return tf.image.stateless_random_saturation(image, *jitter.saturation, seed=seed)
    if op == "hue":
        return tf.image.stateless_random_hue(image, jitter.hue, seed)
    return tf.image.stateless_random_contrast(image, *jitter.contrast, seed=seed)


def random_color(image: tf.Tensor, seed: tf.Tensor, jitter: ColorJitter) -> tf.Tensor:
    """``jitter``'s colour operations in one of its orderings (drawn per image), on [0, 1],
    clipped to [0, 1] at the end as TEFLA's ``distort_color`` does.

    Every operation has its own seed, shared by all orderings, so an image gets the same
    brightness delta (etc.) whichever ordering is drawn; the ordering's draw is folded
    in separately, so a one-ordering preset draws exactly what it drew before presets
    had orderings (same seed, same augmentation, same results).
    """
    op_seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    seeds = dict(zip(("brightness", "saturation", "hue", "contrast"), op_seeds))
    order_seed = tf.random.experimental.stateless_fold_in(seed, len(op_seeds))

    def apply(ordering: Tuple[str, ...]) -> tf.Tensor:
        out = image
        for op in ordering:
            out = _color_op(out, op, jitter, seeds[op])
        return out

    if len(jitter.orderings) == 1:
        image = apply(jitter.orderings[0])
    else:
        branch = tf.random.stateless_uniform([], order_seed, maxval=len(jitter.orderings),
                                             dtype=tf.int32)
        image = tf.switch_case(branch, [lambda o=o: apply(o) for o in jitter.orderings])
    return tf.clip_by_value(image, 0.0, 1.0)


def standardize(image: tf.Tensor) -> tf.Tensor:
    """Per-image standardisation (paper Sec. III): zero mean, unit std, float32."""
    return tf.image.per_image_standardization(tf.cast(image, tf.float32))


# ------------------------------------------------------------------- per-agent entries

def augment_for_classifier(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: int,
    data: DataConfig,
    affine_ranges: AffineRanges = AffineRanges(),
) -> tf.Tensor:
    """Training view of a resized uint8 image for the classifier: float32 [S, S, 3],
    with the colour jitter ``data.color_jitter`` names."""
    geometry_seed, color_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    pixels = tf.cast(image, tf.float32) / 255.0
    pixels, _ = random_geometry(
        pixels, None, geometry_seed, crop_size=crop_size,
        flip_left_right=data.flip_left_right, flip_up_down=data.flip_up_down,
        random_pad=data.random_pad, affine=affine_ranges if data.affine else None)
    jitter = color_jitter(data.color_jitter)
    if jitter is not None:
        pixels = random_color(pixels, color_seed, jitter)
    return standardize(pixels)


def augment_for_segmentation(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: int,
    data: DataConfig,
    affine_ranges: AffineRanges = AffineRanges(),
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Training view of a resized (image uint8, mask uint8) pair: (float32, int32).

    No colour jitter: the paper gives it to the classifier only (Sec. III).
    """
    pixels = tf.cast(image, tf.float32)
    pixels, mask = random_geometry(
        pixels, mask, seed, crop_size=crop_size,
        flip_left_right=data.flip_left_right, flip_up_down=data.flip_up_down,
        random_pad=data.random_pad, affine=affine_ranges if data.affine else None)
    return standardize(pixels), tf.cast(mask, tf.int32)
