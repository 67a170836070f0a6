"""DecoupledNet bridging layers (coopseg/models/decouplednet/bridging.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, DataConfig, DecoupledConfig, ExperimentConfig, ModelConfig
from coopseg.models.decouplednet.bridging import (FrozenClassifierFeatures, bridging_layers,
                                                  class_saliency)
from coopseg.models.decouplednet.network import build_decouplednet_classifier

POOL5 = (2, 2, 3)  # tiny pool5: 12 values
FC, L = 5, 4


def _dense_stack(seed: int, bias6: float = 0.0):
    rng = np.random.default_rng(seed)
    p = int(np.prod(POOL5))
    weights = dict(w6=rng.normal(size=(p, FC)), b6=rng.normal(size=FC) + bias6,
                   w7=rng.normal(size=(FC, FC)), b7=rng.normal(size=FC),
                   w8=rng.normal(size=(FC, L)), b8=rng.normal(size=L))
    return {k: tf.constant(v, tf.float64) for k, v in weights.items()}


def _forward(pool5, w):
    z6 = tf.reshape(pool5, [pool5.shape[0], -1]) @ w["w6"] + w["b6"]
    z7 = tf.nn.relu(z6) @ w["w7"] + w["b7"]
    return z6, z7, tf.nn.relu(z7) @ w["w8"] + w["b8"]


def _saliency(pool5, w, class_index):
    z6, z7, logits = _forward(pool5, w)
    return class_saliency(logits, class_index, z6, z7, [w["w6"], w["w7"], w["w8"]], POOL5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bridging_map_equals_analytic_gradient_of_tiny_dense_stack(seed):
    w = _dense_stack(seed)
    pool5 = tf.constant(np.random.default_rng(10 + seed).normal(size=(L, *POOL5)))
    # Every class, and one batch with a different class per example.
    for class_index in [tf.fill([L], l) for l in range(L)] + [tf.constant([3, 0, 2, 1])]:
        with tf.GradientTape() as tape:
            tape.watch(pool5)
            _, _, logits = _forward(pool5, w)
            one_hot = tf.one_hot(class_index, L, dtype=tf.float64)
            signal = tf.stop_gradient(tf.sigmoid(logits) * one_hot)
            objective = tf.reduce_sum(signal * logits)
        expected = tape.gradient(objective, pool5)
        got = _saliency(pool5, w, class_index)
        assert got.shape == (L, *POOL5)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)
        assert np.abs(got.numpy()).max() > 1e-3  # not trivially zero


def test_relu_masks_of_the_forward_pass_are_applied():
    w = _dense_stack(3)
    pool5 = tf.constant(np.random.default_rng(4).normal(size=(2, *POOL5)))
    classes = tf.constant([1, 2])
    z6, z7, logits = _forward(pool5, w)
    mask6, mask7 = (z6.numpy() > 0), (z7.numpy() > 0)
    assert 0 < mask6.sum() < mask6.size and 0 < mask7.sum() < mask7.size  # masks matter here
    signal = tf.sigmoid(logits).numpy() * np.eye(L)[classes.numpy()]
    w6, w7, w8 = (w[k].numpy() for k in ("w6", "w7", "w8"))
    masked = ((signal @ w8.T * mask7) @ w7.T * mask6) @ w6.T
    unmasked = (signal @ w8.T @ w7.T) @ w6.T
    got = _saliency(pool5, w, classes).numpy().reshape(2, -1)
    np.testing.assert_allclose(got, masked, rtol=1e-10)
    assert not np.allclose(got, unmasked)
    # All fc6 units off (large negative bias): nothing flows back to pool5.
    dead = _saliency(pool5, _dense_stack(3, bias6=-1e3), classes)
    np.testing.assert_array_equal(dead.numpy(), 0.0)


def _config(input_size: int, num_classes: int) -> ExperimentConfig:
    """A tiny DecoupledNet: ``num_classes`` image-level classes (plus background), VGG
    widths / 16, fc 16, bridge 8."""
    names = ("background",) + tuple(f"class_{i}" for i in range(num_classes))
    return ExperimentConfig(
        method="decouplednet",
        model=ModelConfig(input_size=input_size, num_seg_classes=num_classes + 1),
        data=DataConfig(class_names=names),
        decoupled=DecoupledConfig(width_multiplier=1 / 16, fc_units=16, bridge_filters=8))


@pytest.fixture(scope="module")
def tiny_classifier():
    tf.keras.utils.set_random_seed(0)
    return build_decouplednet_classifier(_config(input_size=64, num_classes=3))


def test_frozen_classifier_features_match_gradient_through_keras_head(tiny_classifier):
    clf = tiny_classifier
    features = FrozenClassifierFeatures(clf)
    images = tf.random.stateless_normal([2, 64, 64, 3], seed=[0, 1])
    classes = tf.constant([2, 0])
    out = features([images, classes])
    assert out["pool5"].shape == (2, 2, 2, 32) and len(out["switches"]) == 5
    assert [s.shape[1] for s in out["switches"]] == [32, 16, 8, 4, 2]
    np.testing.assert_allclose(out["class_logits"], clf(images, training=False), atol=1e-6)
    pool5 = out["pool5"]
    with tf.GradientTape() as tape:
        tape.watch(pool5)
        h = clf.get_layer("flatten")(pool5)
        for name in ("fc6", "fc7"):
            h = tf.nn.relu(clf.get_layer(name)(h))
        logits = clf.get_layer("fc8")(h)
        objective = tf.reduce_sum(tf.stop_gradient(tf.sigmoid(logits) * tf.one_hot(classes, 3))
                                  * logits)
    np.testing.assert_allclose(out["class_saliency"], tape.gradient(objective, pool5), atol=1e-6)
    # The wrapper holds the classifier's weights, none of them trainable; the classifier
    # itself stays trainable (stage 1 may go on).
    assert features.trainable_weights == []
    assert len(features.non_trainable_weights) == len(clf.weights)
    assert len(clf.trainable_weights) > 0
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        features([images, tf.constant([0, 3])])


def test_frozen_classifier_features_rejects_a_foreign_classifier():
    inp = tf.keras.Input((8, 8, 3))
    other = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="fc8")(inp), name="other")
    with pytest.raises(ConfigError, match="block1_pool"):
        FrozenClassifierFeatures(other)


def test_bridging_layers_output_shape():
    f_spat = tf.keras.Input((2, 2, 6))
    f_cls = tf.keras.Input((2, 2, 6))
    g = bridging_layers(f_spat, f_cls, 5)
    assert g.shape.as_list() == [None, 2, 2, 5]
    model = tf.keras.Model([f_spat, f_cls], g)
    out = model([tf.ones([3, 2, 2, 6]), tf.zeros([3, 2, 2, 6])]).numpy()
    assert out.shape == (3, 2, 2, 5) and (out >= 0).all()  # ReLU output
