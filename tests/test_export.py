"""The SavedModel reproduces the Keras model and carries its metadata."""
import json
import os

import numpy as np
import tensorflow as tf

from coopseg.models.registry import build_system
from coopseg.serving.export import export_saved_model
from experiments.scales import experiment
from tests.helpers import built_system_with_bn_statistics


def test_saved_model_matches_keras(tmp_path):
    cfg = experiment("tiny").validate()
    system, x = built_system_with_bn_statistics(cfg)
    s = cfg.model.input_size
    path = export_saved_model(system, cfg, str(tmp_path / "export"))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".export-")]  # temp dir renamed
    meta = json.load(open(os.path.join(path, "assets", "coopseg.json")))
    assert meta["input_size"] == s and meta["class_names"][0] == "background"

    loaded = tf.saved_model.load(path)
    serve = loaded.signatures["serving_default"]
    got = serve(images=tf.constant(x))
    want = system.joint_model(tf.image.per_image_standardization(x), training=False)
    np.testing.assert_allclose(got["grade_probabilities"].numpy(),
                               tf.nn.softmax(want["grade_logits"]).numpy(), atol=1e-5)
    np.testing.assert_allclose(got["segmentation_probabilities"].numpy(),
                               tf.nn.softmax(want["seg_logits"]).numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["class_map"].numpy(),
                                  tf.argmax(want["seg_logits"], -1).numpy())
    np.testing.assert_array_equal(got["grade"].numpy(), tf.argmax(want["grade_logits"], -1).numpy())
    assert got["class_map"].dtype == tf.int32


def test_segmentation_only_baseline_exports_without_grades(tmp_path):
    cfg = experiment("tiny", method="inception_unet", train={"mode": "seg_only"}).validate()
    system = build_system(cfg)
    path = export_saved_model(system, cfg, str(tmp_path / "unet"))
    out = tf.saved_model.load(path).signatures["serving_default"](
        images=tf.zeros([1, cfg.model.input_size, cfg.model.input_size, 3]))
    assert set(out) == {"segmentation_probabilities", "class_map"}
