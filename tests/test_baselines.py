"""Tests for the paper's baselines (FCN-8s, Inception-UNet, classifiers) and the weight hand-over."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, ModelConfig
from coopseg.models.baselines.builders import BASELINES, build_baseline
from coopseg.models.baselines.classifiers import (build_inceptionv3_classifier,
                                                  build_vgg16_classifier, build_vgg19_classifier)
from coopseg.models.baselines.fcn8s import bilinear_upsample_initializer, build_fcn8s
from coopseg.models.baselines.inception_unet import build_inception_unet
from coopseg.models.jointseg.network import build_encoder, build_jointseg
from coopseg.models.transfer import WeightTransferError, transfer_encoder_weights

TINY_WIDTH = 1 / 16


def tiny_config(**overrides) -> ModelConfig:
    fields = dict(input_size=32, num_seg_classes=3, stem_filters=8, encoder_filters=(8, 16),
                  encoder_blocks=(1, 1))
    fields.update(overrides)
    return ModelConfig(**fields)


@pytest.fixture(scope="module")
def tiny_fcn() -> tf.keras.Model:
    tf.random.set_seed(0)
    return build_fcn8s(tiny_config(), width_multiplier=TINY_WIDTH)


def random_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)


# --- bilinear upsampling -------------------------------------------------------------------

@pytest.mark.parametrize("factor", [2, 8])
def test_bilinear_deconv_reproduces_bilinear_resize_in_the_interior(factor):
    kernel = 2 * factor
    deconv = tf.keras.layers.Conv2DTranspose(
        3, kernel, strides=factor, padding="same", use_bias=False,
        kernel_initializer=bilinear_upsample_initializer(kernel, 3))
    x = tf.constant(random_images(1, 6))
    got = deconv(x).numpy()
    want = tf.image.resize(x, [6 * factor, 6 * factor], "bilinear").numpy()
    assert got.shape == want.shape
    inner = slice(factor, -factor)  # the border differs: resize clamps, deconv zero-pads
    np.testing.assert_allclose(got[:, inner, inner], want[:, inner, inner], atol=1e-5)


def test_bilinear_initializer_rejects_a_wrong_kernel_shape():
    init = bilinear_upsample_initializer(4, 3)
    with pytest.raises(ConfigError, match=r"\(4, 4, 3, 3\)"):
        init((4, 4, 3, 5))


# --- FCN-8s --------------------------------------------------------------------------------

def test_fcn8s_outputs_float32_logits_at_input_resolution(tiny_fcn):
    logits = tiny_fcn(random_images(2, 32), training=False)
    assert logits.shape == (2, 32, 32, 3)
    assert logits.dtype == tf.float32
    # Long et al. zero-initialise all class-scoring layers: the untrained net is silent.
    np.testing.assert_array_equal(logits.numpy(), 0.0)
    assert tiny_fcn.get_layer("score_pool3").output.shape[1:3] == (4, 4)  # pool3 = input / 8
    assert tiny_fcn.get_layer("score_pool4").output.shape[1:3] == (2, 2)


def test_fcn8s_pool3_skip_reaches_the_output(tiny_fcn):
    images = tf.constant(random_images(2, 32, seed=1))
    score_pool3 = tiny_fcn.get_layer("score_pool3")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tiny_fcn(images, training=False) * tf.random.normal([2, 32, 32, 3]))
    grad = tape.gradient(loss, score_pool3.kernel)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
    original = [w.numpy() for w in score_pool3.weights]
    try:
        score_pool3.kernel.assign(tf.random.normal(score_pool3.kernel.shape))
        assert float(tf.reduce_max(tf.abs(tiny_fcn(images, training=False)))) > 0
    finally:
        score_pool3.set_weights(original)


def test_fcn8s_rejects_input_not_divisible_by_32():
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_fcn8s(tiny_config(input_size=48), width_multiplier=TINY_WIDTH)


def test_vgg16_trunk_has_keras_applications_names_and_shapes():
    # Without BN the trunk is layer-for-layer keras.applications.VGG16, so a VGG-16
    # checkpoint would load by name.
    config = tiny_config()
    reference = tf.keras.applications.VGG16(include_top=False, weights=None,
                                            input_shape=(32, 32, 3))
    ours = build_vgg16_classifier(config, width_multiplier=1.0, batch_norm=False)
    assert transfer_encoder_weights(reference, ours, prefix="block") == 26  # 13 kernels + biases


def test_vgg16_classifier_hands_its_trunk_to_fcn8s():
    config = tiny_config()
    classifier = build_vgg16_classifier(config, width_multiplier=TINY_WIDTH)
    assert classifier(random_images(3, 32)).shape == (3, config.num_grades)
    fcn = build_fcn8s(config, width_multiplier=TINY_WIDTH)
    # 13 convs, each kernel + BN gamma, beta, moving mean, moving variance.
    assert transfer_encoder_weights(classifier, fcn, prefix="block") == 13 * 5
    np.testing.assert_array_equal(fcn.get_layer("block3_conv2").kernel.numpy(),
                                  classifier.get_layer("block3_conv2").kernel.numpy())


# --- Inception-UNet ------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
def test_inception_unet_outputs_logits_at_input_resolution(size):
    model = build_inception_unet(tiny_config(input_size=size))
    logits = model(random_images(2, size), training=False)
    assert logits.shape == (2, size, size, 3)
    assert logits.dtype == tf.float32


def test_inception_unet_uses_the_given_encoder_and_checks_its_outputs():
    config = tiny_config()
    encoder = build_encoder(config)
    unet = build_inception_unet(config, encoder=encoder)
    assert unet.get_layer("encoder") is encoder
    other_size = build_encoder(tiny_config(input_size=64))
    with pytest.raises(ConfigError, match="spatial sizes"):
        build_inception_unet(config, encoder=other_size)


def test_jointseg_encoder_hands_over_to_the_unet_by_name():
    config = tiny_config(pag_mode="none")  # the decoder is not under test; keep it small
    jointseg = build_jointseg(config)
    unet = build_inception_unet(config)
    copied = transfer_encoder_weights(jointseg.clf_model, unet, prefix="encoder_")
    assert copied == len(jointseg.encoder.weights)
    for src, dst in zip(jointseg.encoder.weights, unet.get_layer("encoder").weights):
        np.testing.assert_array_equal(src.numpy(), dst.numpy())


# --- transfer errors -----------------------------------------------------------------------

def test_transfer_names_a_source_layer_missing_from_the_target():
    source = build_encoder(tiny_config(encoder_blocks=(1, 2)))
    target = build_encoder(tiny_config())
    before = [w.numpy() for w in target.weights]
    with pytest.raises(WeightTransferError, match="encoder_l1_b1_fuse_3x3_conv: no layer"):
        transfer_encoder_weights(source, target, prefix="encoder_")
    # Checked before writing: a failed hand-over leaves the target untouched.
    for old, new in zip(before, target.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_transfer_names_a_shape_mismatch():
    source = build_encoder(tiny_config(encoder_filters=(8, 24)))
    target = build_encoder(tiny_config())
    with pytest.raises(WeightTransferError, match=r"encoder_l1_down_conv: source weight shapes"):
        transfer_encoder_weights(source, target, prefix="encoder_")


def test_transfer_refuses_a_prefix_that_matches_nothing():
    encoder = build_encoder(tiny_config())
    with pytest.raises(WeightTransferError, match="no layer with weights"):
        transfer_encoder_weights(encoder, encoder, prefix="block")


# --- classifiers and the registry ----------------------------------------------------------

def test_vgg19_classifier_outputs_grade_logits():
    config = tiny_config()
    logits = build_vgg19_classifier(config)(random_images(2, 32), training=False)
    assert logits.shape == (2, config.num_grades) and logits.dtype == tf.float32
    with pytest.raises(ConfigError, match=">= 32"):
        build_vgg19_classifier(tiny_config(input_size=16))


def test_inceptionv3_classifier_outputs_grade_logits_and_needs_75_px():
    with pytest.raises(ConfigError, match=">= 75"):
        build_inceptionv3_classifier(tiny_config(input_size=64))
    # 75 is not a multiple of 8, which only the JointSeg encoder needs: no validate() here.
    config = dataclasses.replace(tiny_config(), input_size=75)
    logits = build_inceptionv3_classifier(config)(random_images(1, 75), training=False)
    assert logits.shape == (1, config.num_grades) and logits.dtype == tf.float32


def test_registry_builds_by_name_and_lists_choices_for_unknown_names():
    model = build_baseline("vgg16", tiny_config(), width_multiplier=TINY_WIDTH)
    assert model.name == "vgg16_classifier"
    assert set(BASELINES) == {"fcn8s", "inception_unet", "vgg16", "vgg19", "inceptionv3"}
    with pytest.raises(ConfigError, match=r"unknown baseline 'fcn16s'.*'fcn8s'.*'vgg19'"):
        build_baseline("fcn16s", tiny_config())


# --- trainability --------------------------------------------------------------------------

def blocky_segmentation_task(size: int = 32, cell: int = 8, classes: int = 3):
    """8 images of ``cell``-sized squares; each square's colour gives its class."""
    rng = np.random.default_rng(0)
    cells = rng.integers(0, classes, size=(8, size // cell, size // cell))
    masks = np.kron(cells, np.ones((cell, cell), dtype=np.int64))
    colours = rng.uniform(-1.0, 1.0, size=(classes, 3)).astype(np.float32)
    images = colours[masks] + 0.1 * rng.standard_normal(masks.shape + (3,)).astype(np.float32)
    return tf.constant(images), tf.constant(masks)


def train_losses(model: tf.keras.Model, images, masks, steps: int) -> list:
    optimizer = tf.keras.optimizers.Adam(1e-2)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(masks, model(images, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return [float(step()) for _ in range(steps)]


def test_tiny_fcn8s_overfits_eight_images():
    tf.random.set_seed(1)
    images, masks = blocky_segmentation_task()
    losses = train_losses(build_fcn8s(tiny_config(), width_multiplier=TINY_WIDTH),
                          images, masks, steps=20)
    assert losses[-1] < 0.5 * losses[0], losses


def test_tiny_inception_unet_overfits_eight_images():
    tf.random.set_seed(1)
    images, masks = blocky_segmentation_task()
    config = tiny_config(encoder_filters=(8,), encoder_blocks=(1,))
    losses = train_losses(build_inception_unet(config), images, masks, steps=20)
    assert losses[-1] < 0.5 * losses[0], losses
