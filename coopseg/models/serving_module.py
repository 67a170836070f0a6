"""The tf.Module a SavedModel of a softmax-grades + per-pixel-softmax system holds."""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from coopseg.models.layers.outputs import float32_outputs


class ServingModule(tf.Module):
    """What the SavedModel holds: the trained heads and one signature over them."""

    def __init__(self, system, input_size: int):
        super().__init__(name="coopseg_serving")
        # Track the variables, not the Keras models: saving then traces ``serve`` alone
        # instead of Keras' per-layer serialisation, which servers never use and which
        # made export ~5x slower. The models are kept out of tracking in a closure.
        models = [m for m in (system.joint_model, system.clf_model, system.seg_model) if m]
        unique = {id(v): v for m in models for v in m.weights}
        self.model_variables = list(unique.values())
        self.input_size = input_size
        heads = (system.joint_model, system.clf_model, system.seg_model)
        self._logits = lambda x: _logits(heads, x)
        spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="images")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        x = tf.image.per_image_standardization(images)
        logits = self._logits(x)
        out = {}
        if "grade_logits" in logits:
            probs = tf.nn.softmax(tf.cast(logits["grade_logits"], tf.float32), axis=-1)
            out["grade_probabilities"] = probs
            out["grade"] = tf.argmax(probs, axis=-1, output_type=tf.int32)
        if "seg_logits" in logits:
            probs = tf.nn.softmax(tf.cast(logits["seg_logits"], tf.float32), axis=-1)
            out["segmentation_probabilities"] = probs
            out["class_map"] = tf.argmax(probs, axis=-1, output_type=tf.int32)
        return float32_outputs(out)


def _logits(heads, x: tf.Tensor) -> Dict[str, tf.Tensor]:
    joint_model, clf_model, seg_model = heads
    if joint_model is not None:  # one encoder pass for both heads
        return joint_model(x, training=False)
    out = {}
    if clf_model is not None:
        out["grade_logits"] = clf_model(x, training=False)
    if seg_model is not None:
        out["seg_logits"] = seg_model(x, training=False)
    return out
