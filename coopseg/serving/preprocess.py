"""In-graph preprocessing of encoded photos for the SavedModel's bytes signature.

``coopseg-predict`` prepares photos in Python with the converter's OpenCV code
(``data_pipelines.fundus``) and the evaluation pipeline's resize. A server has no
Python, so ``serving_bytes`` does the same steps with TensorFlow ops only
(``prepare_encoded``); how closely they agree: docs/serving.md.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from coopseg.serving.photo_preprocessing import PhotoPreprocessing
from data_pipelines.augment import pad_to_square, resize_image

# Same constants as data_pipelines.fundus.crop_box_to_retina.
_WORK_SIDE = 512
_MIN_AREA_FRACTION = 0.01


def decode_photo(encoded: tf.Tensor) -> tf.Tensor:
    """One encoded image (scalar string) -> RGB uint8 ``[H, W, 3]``.

    Grayscale is replicated, alpha dropped; an animated GIF gives its first frame.
    A string that is not an image fails the request with TensorFlow's decode error.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    return tf.ensure_shape(image, [None, None, 3])


def _median(values: tf.Tensor) -> tf.Tensor:
    flat = tf.sort(tf.reshape(values, [-1]))
    return flat[tf.size(flat) // 2]


def retina_box(image: tf.Tensor, threshold: int = 10) -> tf.Tensor:
    """``[y0, y1, x0, x1]`` (int32, half-open) of the retina disc in an RGB uint8 image.

    The whole frame when no disc covers 1 % of the image (a black frame, or a photo
    without a border).

    It differs from ``fundus.crop_box_to_retina`` in one way: TensorFlow has no connected
    components, so instead of keeping the largest bright region, a 5x5 morphological
    opening (min-pool, then max-pool) removes what is thinner than the disc: sensor
    noise, JPEG ringing in the border, the strokes of burnt-in text. A solid logo in
    the border would survive the opening and widen the box, where the OpenCV crop would
    drop it. ``tests/test_serving_bytes.py`` checks that the two boxes agree on
    synthetic photos with noise and text in the border.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    # Rounded like OpenCV's uint8 luminance, so the threshold cuts at the same level.
    gray = tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))[:, :, 0])
    step = tf.maximum(1, tf.maximum(height, width) // _WORK_SIDE)
    small = gray[::step, ::step]
    small_h, small_w = tf.shape(small)[0], tf.shape(small)[1]
    c = tf.maximum(2, tf.minimum(small_h, small_w) // 20)
    # The border level is the darkest corner's median: corners lie outside the disc
    # even when the disc is cut off at top and bottom.
    border = tf.reduce_min(tf.stack([_median(small[:c, :c]), _median(small[:c, -c:]),
                                     _median(small[-c:, :c]), _median(small[-c:, -c:])]))
    bright = tf.cast(small > border + threshold, tf.float32)[None, :, :, None]
    opened = tf.nn.max_pool2d(-tf.nn.max_pool2d(-bright, 5, 1, "SAME"), 5, 1, "SAME")
    area = tf.reduce_sum(opened)
    # The opening also rounds off the disc's outermost pixels: add back the bright
    # pixels next to it, as the converter does after its median filter.
    disc = (tf.nn.max_pool2d(opened, 5, 1, "SAME") * bright)[0, :, :, 0]
    rows = tf.where(tf.reduce_max(disc, axis=1) > 0)[:, 0]
    cols = tf.where(tf.reduce_max(disc, axis=0) > 0)[:, 0]
    found = area >= _MIN_AREA_FRACTION * tf.cast(small_h * small_w, tf.float32)

    def box_of_disc():
        # Back to full resolution, widened by one sample step so no retina is cut off.
        margin = tf.where(step > 1, step, 0)
        y0 = tf.cast(rows[0], tf.int32) * step - margin
        y1 = (tf.cast(rows[-1], tf.int32) + 1) * step + margin
        x0 = tf.cast(cols[0], tf.int32) * step - margin
        x1 = (tf.cast(cols[-1], tf.int32) + 1) * step + margin
        return tf.stack([tf.maximum(0, y0), tf.minimum(height, y1),
                         tf.maximum(0, x0), tf.minimum(width, x1)])

    return tf.cond(found, box_of_disc, lambda: tf.stack([0, height, 0, width]))


def crop_pad_square(image: tf.Tensor, box: tf.Tensor) -> tf.Tensor:
    """Crop to ``box`` and pad the short side with black, content centred
    (``fundus.apply_box``)."""
    return pad_to_square(image[box[0]:box[1], box[2]:box[3]], 0)


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's kernel for ``GaussianBlur(ksize=(0, 0), sigma)`` on uint8 images."""
    size = int(round(sigma * 3 * 2 + 1)) | 1
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-x ** 2 / (2 * sigma ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def graham_normalize(image: tf.Tensor, size: int, disc_fraction: float = 0.9) -> tf.Tensor:
    """``data_pipelines.fundus.graham_normalize`` in TensorFlow ops, for a uint8
    ``[size, size, 3]`` image: ``4 * img - 4 * blur(img, sigma = size / 60) + 128``,
    saturated, and gray 128 outside ``disc_fraction`` of the disc radius.

    Same kernel, reflect-101 border and rounding of the blurred image as OpenCV;
    ``tests/test_serving_bytes.py`` bounds the difference (OpenCV blurs uint8 in fixed
    point, so single pixels may differ by a few grey levels).
    """
    radius = size / 2.0
    kernel = _gaussian_kernel(radius / 30.0)
    half = len(kernel) // 2
    x = tf.cast(image, tf.float32)[None]
    padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    column = tf.constant(np.tile(kernel[:, None, None, None], (1, 1, 3, 1)))
    row = tf.constant(np.tile(kernel[None, :, None, None], (1, 1, 3, 1)))
    blurred = tf.nn.depthwise_conv2d(tf.nn.depthwise_conv2d(padded, column, [1] * 4, "VALID"),
                                     row, [1] * 4, "VALID")
    out = tf.clip_by_value(tf.round(4.0 * x - 4.0 * tf.round(blurred) + 128.0), 0.0, 255.0)[0]
    # The disc mask is a constant of the (static) size, built once at trace time.
    yy, xx = np.mgrid[:size, :size]
    r = int(radius * disc_fraction)
    inside = ((xx - size // 2) ** 2 + (yy - size // 2) ** 2 <= r * r)[:, :, None]
    return tf.cast(tf.where(tf.constant(inside), out, 128.0), tf.uint8)


def prepare_encoded(encoded: tf.Tensor, size: int,
                    preprocessing: PhotoPreprocessing = PhotoPreprocessing()) -> tf.Tensor:
    """A batch of encoded photos ``[N]`` -> float32 RGB 0..255 ``[N, size, size, 3]``,
    ready for the float ``serving_default`` signature, which then standardises as usual.

    1. decode JPEG/PNG/BMP/GIF bytes to RGB uint8 (``decode_photo``);
    2. if the training data was retina-cropped (``preprocessing.crop_retina``): find the
       retina disc's box (``retina_box``), crop to it and pad to a centred black square;
    3. resize to the model's input size, bilinear with antialiasing
       (``data_pipelines.augment.resize_image``);
    4. if the training data was Graham-normalised: ``graham_normalize``.
    """

    def prepare_one(data: tf.Tensor) -> tf.Tensor:
        image = decode_photo(data)
        if preprocessing.crop_retina:
            image = crop_pad_square(image, retina_box(image, preprocessing.retina_threshold))
        image = resize_image(image, size)
        if preprocessing.graham:
            image = graham_normalize(image, size)
        return tf.cast(image, tf.float32)

    return tf.map_fn(prepare_one, encoded,
                     fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))
