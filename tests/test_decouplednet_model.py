"""DecoupledNet classifier, segmenter, inference and losses (coopseg/models/decouplednet/network.py)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import (IGNORE_LABEL, ConfigError, DataConfig, DecoupledConfig,
                            ExperimentConfig, ModelConfig)
from coopseg.models.decouplednet.network import (DecoupledNetInference,
                                                 build_decouplednet_classifier,
                                                 build_decouplednet_segmenter, class_presence,
                                                 class_targets, combine_class_masks,
                                                 foreground_segmentation_loss,
                                                 multilabel_classification_loss,
                                                 predict_with_true_classes)


def _config(input_size: int = 32, num_classes: int = 3, **decoupled) -> ExperimentConfig:
    """A tiny DecoupledNet: ``num_classes`` image-level classes (plus background), VGG
    widths / 16, fc 16, bridge 8; ``decoupled`` overrides ``DecoupledConfig`` fields."""
    names = ("background",) + tuple(f"class_{i}" for i in range(num_classes))
    return ExperimentConfig(
        method="decouplednet",
        model=ModelConfig(input_size=input_size, num_seg_classes=num_classes + 1),
        data=DataConfig(class_names=names),
        decoupled=DecoupledConfig(**{"width_multiplier": 1 / 16, "fc_units": 16,
                                     "bridge_filters": 8, **decoupled}))


TINY = _config()


def _models(cfg: ExperimentConfig = TINY, seed: int = 0):
    tf.keras.utils.set_random_seed(seed)
    classifier = build_decouplednet_classifier(cfg)
    return classifier, build_decouplednet_segmenter(cfg, classifier)


@pytest.fixture(scope="module")
def models():
    return _models()


def _images(n: int, size: int = 32, seed: int = 0) -> tf.Tensor:
    return tf.random.stateless_normal([n, size, size, 3], seed=[seed, 7])


def test_config_validation():
    TINY.validate()
    for bad, field in ((dict(input_size=48), "input_size"), (dict(num_classes=0), "classes"),
                       (dict(width_multiplier=0.0), "decoupled.width_multiplier"),
                       (dict(score_threshold=1.5), "decoupled.score_threshold"),
                       (dict(dropout=1.0), "decoupled.dropout"),
                       (dict(fc_units=0), "decoupled.fc_units")):
        with pytest.raises(ConfigError, match=field):
            _config(**bad).validate()
    assert TINY.decoupled.vgg_widths() == (4, 8, 16, 32, 32)
    assert DecoupledConfig().vgg_widths() == (64, 128, 256, 512, 512)


def test_classifier_is_vgg16_with_argmax_pools(models):
    classifier, _ = models
    convs = [l.name for l in classifier.layers if isinstance(l, tf.keras.layers.Conv2D)]
    assert convs == [f"block{b}_conv{i}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3))
                     for i in range(1, n + 1)]
    assert classifier.get_layer("fc6").units == 16 and classifier.get_layer("fc8").units == 3
    assert classifier(_images(2)).shape == (2, 3)


def test_segmenter_shapes_and_trainable_weights(models):
    classifier, segmenter = models
    logits = segmenter([_images(2), tf.constant([0, 2])])
    assert logits.shape == (2, 32, 32, 2)
    classifier_ids = {id(v) for v in classifier.weights}
    trainable = segmenter.trainable_weights
    assert trainable and not any(id(v) in classifier_ids for v in trainable)
    names = {v.name.split("/")[0] for v in trainable}
    assert {"bridge_fc", "fc6_deconv", "deconv1_2", "seg_score"} <= names
    # The classifier's variables are still part of the segmenter (checkpoints, export).
    assert classifier_ids <= {id(v) for v in segmenter.non_trainable_weights}


def test_sgd_step_on_segmenter_leaves_classifier_bit_identical():
    classifier, segmenter = _models(seed=1)
    before_clf = [v.numpy().copy() for v in classifier.weights]
    before_seg = [v.numpy().copy() for v in segmenter.trainable_weights]
    targets = tf.cast(_images(2)[..., 0] > 0, tf.int32)
    with tf.GradientTape() as tape:
        logits = segmenter([_images(2), tf.constant([1, 0])], training=True)
        loss = foreground_segmentation_loss(targets, logits)
    grads = tape.gradient(loss, segmenter.trainable_weights)
    assert all(g is not None for g in grads)
    tf.keras.optimizers.SGD(0.1).apply_gradients(zip(grads, segmenter.trainable_weights))
    for before, var in zip(before_clf, classifier.weights):  # incl. BN moving statistics
        np.testing.assert_array_equal(before, var.numpy(), err_msg=var.name)
    after_seg = [v.numpy() for v in segmenter.trainable_weights]
    assert all(not np.array_equal(b, a) for b, a in zip(before_seg, after_seg))


def test_combine_class_masks_hand_built():
    scores = tf.constant([[0.9, 0.2, 0.6]])  # class 1 below threshold 0.5
    fg = np.zeros((1, 3, 1, 4), np.float32)
    # pixel 0: class 0 wins (0.8 > class 2's 0.7); pixel 1: class 1 has 0.99 but is not
    # identified, class 2 wins with 0.6; pixel 2: best fg 0.4 < its bg 0.6 -> background;
    # pixel 3: only the unidentified class claims it -> background.
    fg[0, :, 0, 0] = [0.8, 0.1, 0.7]
    fg[0, :, 0, 1] = [0.3, 0.99, 0.6]
    fg[0, :, 0, 2] = [0.4, 0.0, 0.2]
    fg[0, :, 0, 3] = [0.0, 0.95, 0.1]
    out = combine_class_masks(scores, tf.constant(fg), 0.5)
    np.testing.assert_array_equal(out["class_map"].numpy(), [[[1, 3, 0, 0]]])
    probs = out["class_probs"].numpy()
    assert probs.shape == (1, 4, 1, 4)
    np.testing.assert_allclose(probs[0, :, 0, 0], [0.2, 0.8, 0.0, 0.7], atol=1e-6)
    np.testing.assert_allclose(probs[0, :, 0, 3], [0.9, 0.0, 0.0, 0.1], atol=1e-6)
    # No class identified at all: everything is background with probability 1.
    none = combine_class_masks(tf.constant([[0.1, 0.2, 0.3]]), tf.constant(fg), 0.5)
    np.testing.assert_array_equal(none["class_map"].numpy(), 0)
    np.testing.assert_array_equal(none["class_probs"].numpy()[0, 0], 1.0)


def test_inference_runs_segmenter_per_class_in_image_major_order(models):
    classifier, segmenter = models
    images = _images(2, seed=3)
    # Threshold 0: every class identified.
    out = DecoupledNetInference(classifier, segmenter, 0.0).predict(images)
    assert out["class_scores"].shape == (2, 3) and out["class_map"].dtype == tf.int32
    assert out["class_probs"].shape == (2, 4, 32, 32)
    for b in range(2):
        for l in range(3):
            direct = tf.nn.softmax(segmenter([images[b:b + 1], tf.constant([l])]))[0, ..., 1]
            np.testing.assert_allclose(out["class_probs"][b, l + 1], direct, atol=1e-5)
    np.testing.assert_allclose(out["class_scores"], tf.sigmoid(classifier(images)), atol=1e-6)
    probs = out["class_probs"].numpy()
    np.testing.assert_array_equal(out["class_map"].numpy(), probs.argmax(axis=1))


def test_true_class_diagnostic_segments_exactly_the_classes_present(models):
    label_maps = tf.constant([[[0, 2, IGNORE_LABEL]], [[0, 0, 0]], [[1, 3, 1]]], tf.int32)
    np.testing.assert_array_equal(class_presence(label_maps, 3).numpy(),
                                  [[0, 1, 0], [0, 0, 0], [1, 0, 1]])
    classifier, segmenter = models
    images = _images(3, seed=5)
    maps = tf.constant(np.stack([np.full((32, 32), v) for v in (2, 0, 3)]), tf.int32)
    maps = tf.tensor_scatter_nd_update(maps, [[2, 0, 0]], [1])  # image 2 holds classes 0, 2
    got = predict_with_true_classes(segmenter, 3, images, maps).numpy()
    # Same argmax as the real inference with the true classes as scores.
    out = DecoupledNetInference(classifier, segmenter, 0.0).predict(images)
    presence = class_presence(maps, 3)
    expected = combine_class_masks(presence, out["class_probs"][:, 1:], 0.5)["class_map"]
    np.testing.assert_array_equal(got, expected.numpy())
    assert not got[1].any()  # no class present: all background
    assert set(np.unique(got[0])) <= {0, 2} and set(np.unique(got[2])) <= {0, 1, 3}


def test_export_parity(models, tmp_path):
    classifier, segmenter = models
    module = DecoupledNetInference(classifier, segmenter, TINY.decoupled.score_threshold)
    images = _images(3, seed=5)
    expected = module.predict(images)
    tf.saved_model.save(module, str(tmp_path / "decouplednet"))
    loaded = tf.saved_model.load(str(tmp_path / "decouplednet"))
    got = loaded.predict(images)
    for key in ("class_scores", "class_probs"):
        assert np.abs(got[key].numpy() - expected[key].numpy()).max() <= 1e-5
    np.testing.assert_array_equal(got["class_map"].numpy(), expected["class_map"].numpy())


def test_losses_and_targets():
    label_map = tf.constant([[[0, 1, 2, IGNORE_LABEL]]])
    np.testing.assert_array_equal(class_targets(label_map, tf.constant([1])).numpy(),
                                  [[[0, 0, 1, IGNORE_LABEL]]])
    logits = tf.constant([[[[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [50.0, -50.0]]]])
    targets = tf.constant([[[0, 1, 1, IGNORE_LABEL]]])
    expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), np.log1p(np.exp(-3.0))])
    np.testing.assert_allclose(foreground_segmentation_loss(targets, logits), expected, rtol=1e-5)
    labels, clf_logits = tf.constant([[1, 0]]), tf.constant([[0.0, 2.0]])
    expected_clf = np.mean([np.log(2.0), np.log1p(np.exp(2.0))])
    np.testing.assert_allclose(multilabel_classification_loss(labels, clf_logits), expected_clf,
                               rtol=1e-5)


def test_stage2_training_learns_a_bright_square():
    """Fixed random classifier; bridge + deconv learn 'bright centre square = foreground'.

    Half the images carry the square. The deconvolution net sees the image only
    through the frozen classifier (pool5, saliency, switches), so beating the loss of
    predicting the foreground rate everywhere shows information flows through it.
    """
    classifier, segmenter = _models(_config(num_classes=2), seed=2)
    rng = np.random.default_rng(0)

    def batch(n=8):
        x = rng.normal(0, 0.3, (n, 32, 32, 3)).astype(np.float32)
        m = np.zeros((n, 32, 32), np.int32)
        has_square = rng.random(n) < 0.5
        x[has_square, 8:24, 8:24] += 2.0
        m[has_square, 8:24, 8:24] = 1
        return x, m

    optimizer = tf.keras.optimizers.Adam(0.01)
    frozen = [v.numpy().copy() for v in classifier.weights]

    @tf.function
    def step(x, m):
        with tf.GradientTape() as tape:
            logits = segmenter([x, tf.zeros([8], tf.int32)], training=True)
            loss = foreground_segmentation_loss(m, logits)
        grads = tape.gradient(loss, segmenter.trainable_weights)
        optimizer.apply_gradients(zip(grads, segmenter.trainable_weights))
        return loss

    losses = [float(step(*batch())) for _ in range(60)]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    rate = 0.125  # expected foreground fraction: 16x16 of 32x32 in half the images
    rate_only_loss = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))  # ~0.38
    assert last < 0.5 * first and last < 0.6 * rate_only_loss, (first, last)
    for before, var in zip(frozen, classifier.weights):
        np.testing.assert_array_equal(before, var.numpy())
