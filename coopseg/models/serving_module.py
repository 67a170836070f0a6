"""The tf.Module a SavedModel of a softmax-grades + per-pixel-softmax system holds."""
from __future__ import annotations

from typing import Dict

import tensorflow as tf

from coopseg.models.layers.outputs import float32_outputs
from coopseg.models.sliding_window import segment_probabilities


class ServingModule(tf.Module):
    """What the SavedModel holds: the trained heads and one signature over them."""

    def __init__(self, system, input_size: int, working_size: int = 0):
        """``input_size``: the models' input. ``working_size`` > ``input_size``: the
        signature takes images of that size; the classifier sees them resized to its
        input, the segmenter segments them whole by overlapping tiles."""
        super().__init__(name="coopseg_serving")
        # Track the variables, not the Keras models: saving then traces ``serve`` alone
        # instead of Keras' per-layer serialisation, which servers never use and which
        # made export ~5x slower. The models are kept out of tracking in a closure.
        models = [m for m in (system.joint_model, system.clf_model, system.seg_model) if m]
        unique = {id(v): v for m in models for v in m.weights}
        self.model_variables = list(unique.values())
        self.input_size = input_size
        self.serving_size = max(working_size, input_size)
        heads = (system.joint_model, system.clf_model, system.seg_model)
        self._logits = lambda x: _logits(heads, x)
        clf_model, seg_model = system.clf_model, system.seg_model
        self._tiled = lambda images: _tiled_logits(clf_model, seg_model, images, input_size)
        spec = tf.TensorSpec([None, self.serving_size, self.serving_size, 3], tf.float32,
                             name="images")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        if self.serving_size != self.input_size:
            logits = self._tiled(images)
        else:
            logits = self._logits(tf.image.per_image_standardization(images))
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


def _tiled_logits(clf_model, seg_model, images: tf.Tensor, input_size: int
                  ) -> Dict[str, tf.Tensor]:
    """Logits at a working resolution: grades from the whole image resized to the
    classifier's input, segmentation from overlapping tiles of the whole image (their
    blended softmax, returned as log-probabilities, whose softmax it is)."""
    out = {}
    if clf_model is not None:
        small = tf.image.resize(images, [input_size, input_size], method="bilinear",
                                antialias=True)
        out["grade_logits"] = clf_model(tf.image.per_image_standardization(small),
                                        training=False)
    if seg_model is not None:
        probabilities = segment_probabilities(seg_model,
                                              tf.image.per_image_standardization(images))
        out["seg_logits"] = tf.math.log(tf.maximum(probabilities, 1e-30))
    return out
