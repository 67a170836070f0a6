"""Input adapter: per-image standardised RGB -> the pixel scale ImageNet weights were trained on.

Every coopseg pipeline feeds per-image standardised RGB (JointSeg paper Sec. III); Keras'
ImageNet weights expect caffe-style BGR (VGG) or RGB in [-1, 1] (InceptionV3). The adapter
is the model's first layer, so the SavedModel export serves the same computation.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import tensorflow as tf

from coopseg.config import ConfigError

# ImageNet per-channel pixel standard deviation (0..255) in RGB order, the values of
# keras.applications' "torch" preprocessing (0.229, 0.224, 0.225) x 255.
IMAGENET_PIXEL_STD_RGB: Tuple[float, float, float] = (58.395, 57.12, 57.375)

# kind -> (per-output-channel scale, reverse RGB -> BGR first).
ADAPTERS: Dict[str, Tuple[Tuple[float, float, float], bool]] = {
    # caffe: BGR, mean-subtracted 0..255 pixels (VGG-16, VGG-19).
    "caffe": (tuple(reversed(IMAGENET_PIXEL_STD_RGB)), True),
    # inception: RGB in [-1, 1] = pixels / 127.5 - 1 (InceptionV3).
    "inception": (tuple(s / 127.5 for s in IMAGENET_PIXEL_STD_RGB), False),
}
LAYER_NAME = "imagenet_input_adapter"


@tf.keras.utils.register_keras_serializable(package="coopseg")
class InputAdapter(tf.keras.layers.Layer):
    """``y = (x[..., ::-1] if reverse_channels else x) * scale``; no weights.

    ``scale`` has one entry per output channel (in the output's channel order).

    What the weights expect: VGG-16 / VGG-19 (``preprocess_input`` mode "caffe") BGR
    pixels 0..255 minus the ImageNet per-channel mean, so a standard deviation of about
    57; InceptionV3 (mode "tf") RGB pixels scaled to [-1, 1], about 0.45. Standardised
    images would put a ~57x too small signal into VGG's ``block1_conv1`` (and the wrong
    channel order), every later layer's activations off by the same factor: the
    ImageNet start would be mostly wasted.

    It is an approximation: it rescales the *per-image* standardised values by
    ImageNet's *data-set* per-channel pixel standard deviation (and reverses RGB -> BGR
    for VGG). It does not restore the per-channel means (per-image standardisation
    removed them, along with each image's brightness), so an image's channels sit a few
    pixel units off where caffe preprocessing of the raw photo would put them; the
    scale, which is what matters most for pre-trained filters and ReLU thresholds, is
    right on average.
    """

    def __init__(self, scale: Sequence[float], reverse_channels: bool, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(s) for s in scale]
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        x = inputs[..., ::-1] if self.reverse_channels else inputs
        return x * tf.constant(self.scale, dtype=x.dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": list(self.scale),
                "reverse_channels": self.reverse_channels}


def input_adapter(kind: str) -> InputAdapter:
    """The adapter layer of ``kind`` ("caffe" or "inception"), named ``LAYER_NAME``."""
    if kind not in ADAPTERS:
        raise ConfigError(f"unknown input adapter {kind!r}; choose one of {sorted(ADAPTERS)}")
    scale, reverse = ADAPTERS[kind]
    return InputAdapter(scale, reverse, name=LAYER_NAME)


def adapt_input(inputs: tf.Tensor, kind: str) -> tf.Tensor:
    """``inputs`` through the ``kind`` adapter; unchanged (no layer at all) when ``kind`` is ""."""
    if not kind:
        return inputs
    return input_adapter(kind)(inputs)
