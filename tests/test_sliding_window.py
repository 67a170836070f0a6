"""Patches of a working resolution and whole-image inference by overlapping tiles
(coopseg/models/sliding_window.py, data_pipelines/augment.sample_patch)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.models import sliding_window as sw
from data_pipelines import augment
from experiments.decouplednet_stages import decoupled_experiment
from experiments.scales import experiment


def test_tiles_cover_the_image_with_the_overlap_asked():
    assert sw.tile_starts(64, 64) == [0] and sw.tile_starts(40, 64) == [0]
    for length, tile in ((101, 32), (768, 256), (257, 256), (1000, 96)):
        starts = sw.tile_starts(length, tile)
        assert starts[0] == 0 and starts[-1] == length - tile
        assert all(b - a <= tile // 2 for a, b in zip(starts, starts[1:]))  # >= half overlap
    weights = sw.gaussian_importance(32)
    assert weights.shape == (32, 32) and weights.max() == pytest.approx(1.0)
    assert weights.min() > 0 and weights[16, 16] > weights[0, 0]


def _pointwise_probabilities(seed=0, classes=4):
    """A per-pixel model (1x1 conv + softmax): tiling cannot change its answer."""
    kernel = tf.constant(np.random.default_rng(seed).normal(size=(1, 1, 3, classes)),
                         tf.float32)
    return lambda x: tf.nn.softmax(tf.nn.conv2d(x, kernel, 1, "SAME"), axis=-1)


@pytest.mark.parametrize("height,width", [(101, 77), (32, 32), (33, 90), (20, 45)])
def test_tiled_equals_whole_image_for_a_pointwise_model_at_any_size(height, width):
    images = tf.random.stateless_normal([2, height, width, 3], [1, 2])
    model = _pointwise_probabilities()
    for tiles_per_call in (1, 3):
        tiled = sw.sliding_window_probabilities(model, images, 32, tiles_per_call=tiles_per_call)
        assert tiled.shape == (2, height, width, 4)
        np.testing.assert_allclose(tiled.numpy(), model(images).numpy(), atol=1e-5)


def _tiny_segmenter(size=32, classes=3):
    inputs = tf.keras.Input([size, size, 3])
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    return tf.keras.Model(inputs, tf.keras.layers.Conv2D(classes, 3, padding="same")(x))


def test_where_the_whole_image_fits_tiling_is_the_model_itself():
    model = _tiny_segmenter()
    images = tf.image.per_image_standardization(tf.random.stateless_uniform([3, 32, 32, 3], [3, 4]))
    whole = tf.nn.softmax(model(images), axis=-1)
    np.testing.assert_allclose(sw.segment_probabilities(model, images).numpy(), whole.numpy(),
                               atol=1e-5)
    # A larger image: every pixel gets a distribution, from blended tiles.
    big = sw.segment_probabilities(model, tf.random.stateless_uniform([1, 75, 75, 3], [5, 6]))
    assert big.shape == (1, 75, 75, 3)
    np.testing.assert_allclose(big.numpy().sum(axis=-1), 1.0, atol=1e-5)


def test_foreground_patches_are_centred_on_a_lesion():
    image = tf.zeros([96, 96, 3], tf.uint8)
    mask = np.zeros((96, 96), np.uint8)
    mask[80, 10] = 3  # one lesion pixel near a corner
    mask[0:4, 90:96] = 255  # ignore is no lesion
    hits = {}
    for fraction in (1.0, 0.0):
        seen = 0
        for k in range(60):
            _, patch = augment.sample_patch(image, tf.constant(mask), tf.constant([k, 7]), 32,
                                            fraction, num_classes=7)
            assert patch.shape == (32, 32)
            seen += int(np.any(patch.numpy() == 3))
        hits[fraction] = seen
    assert hits[1.0] == 60  # every patch shows the lesion
    assert hits[0.0] < 30  # uniform patches mostly miss it (about 1 in 9 contain it)
    # No lesion in the mask: uniform patches, no error.
    _, patch = augment.sample_patch(image, tf.zeros([96, 96], tf.uint8), tf.constant([1, 1]), 32,
                                    1.0, num_classes=7)
    assert patch.shape == (32, 32)


def test_working_size_checks():
    cfg = experiment("tiny")
    cfg.data.working_size = cfg.model.input_size - 32
    with pytest.raises(ConfigError, match="smaller than the segmenter's patches"):
        cfg.validate()
    cfg.data.working_size = 2 * cfg.model.input_size
    cfg.validate()
    dn = decoupled_experiment("tiny", method="decouplednet", mode="seg_only", strong_per_class=0)
    dn.data.working_size = 2 * dn.model.input_size
    with pytest.raises(ConfigError, match="decouplednet segments per class"):
        dn.validate()


def test_a_run_at_a_working_resolution_trains_on_patches_and_serves_whole_images(tmp_path):
    from coopseg.serving.predictor import load_predictor
    from coopseg.training.train import train
    from tests.helpers import tiny_synthetic_config
    cfg = tiny_synthetic_config(str(tmp_path / "data"), str(tmp_path / "run"), steps=6,
                                eval_every=6, checkpoint_every=6)
    size = cfg.model.input_size
    cfg.data.working_size = 2 * size
    cfg.data.resize_size = size + 8  # the classifier's whole images
    out = train(cfg.validate(), export=True)
    seg = out["metrics"]["segmentation"]
    assert 0.0 <= seg["miou"] <= 1.0  # validated on whole images at 2x, by tiles
    assert seg["resolution"] == {"image_px": [2 * size, 2 * size], "model_input_px": size,
                                 "tiled": True}
    meta = json.load(open(os.path.join(out["export"], "assets", "coopseg.json")))
    assert (meta["input_size"], meta["model_input_size"], meta["working_size"]) == (
        2 * size, size, 2 * size)
    for source in (out["export"], cfg.run.model_dir):  # SavedModel and checkpoint alike
        predictor = load_predictor(source)
        assert predictor.input_size == 2 * size
        result = predictor(np.full((1, 2 * size, 2 * size, 3), 90.0, np.float32))
        assert result["class_map"].shape == (1, 2 * size, 2 * size)
        assert result["grade_probabilities"].shape == (1, cfg.model.num_grades)
