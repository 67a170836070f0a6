"""SavedModel export with an explicit serving signature.

``serving_default``: float32 RGB images [N, S, S, 3] with values 0..255 (S = the
model's input size) -> grade probabilities, predicted grade, segmentation
probabilities and the class map. Per-image standardisation (paper Sec. III) happens
inside the graph, so a client needs no Python preprocessing beyond resizing.

``serving_bytes``: encoded JPEG/PNG photos of any size (a batch of strings,
``image_bytes``) -> the same outputs. Decoding, the retina crop and Graham
normalisation where the training data had them, and the resize run in-graph
(``coopseg.serving.preprocess``), so TF Serving or a plain
``tf.saved_model.load`` needs no Python preprocessing at all. TF Serving's REST API
takes such an input as ``{"instances": [{"image_bytes": {"b64": "..."}}]}``.

Mixed precision: the signature stays float32 in and float32 out whatever policy the
models were built under. The float32 images are standardised in float32; each layer
casts its input to its own compute dtype (Keras autocast: float16/bfloat16 inside the
network), the logits layers compute in float32, and ``float32_outputs`` casts anything
floating that is left, so a client never sees half precision.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, Optional

import tensorflow as tf

from coopseg.config import ExperimentConfig
from coopseg.models.system import float32_outputs
from coopseg.serving import photo_preprocessing
from coopseg.serving.photo_preprocessing import PhotoPreprocessing
from coopseg.serving.preprocess import prepare_encoded

FLOAT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"


def bytes_signature(float_signature, input_size: int, preprocessing: PhotoPreprocessing):
    """A tf.function over encoded photos ``[N]`` that prepares them in-graph and calls
    ``float_signature`` (float32 RGB 0..255 ``[N, S, S, 3]``)."""
    spec = tf.TensorSpec([None], tf.string, name="image_bytes")
    # Trace the Python function inline rather than call the float tf.function: the
    # weights are then captured under their own names, as in the float signature.
    float_signature = getattr(float_signature, "python_function", float_signature)

    def serve_bytes(image_bytes: tf.Tensor) -> Dict[str, tf.Tensor]:
        return float_signature(prepare_encoded(image_bytes, input_size, preprocessing))

    return tf.function(serve_bytes, input_signature=[spec])


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


def serving_function(system, input_size: int):
    """``(module, fn)``: the tf.Module a SavedModel of ``system`` holds and its float
    serving function (float32 RGB 0..255 ``[N, S, S, 3]`` -> outputs)."""
    module = (system.serving_module() if system.serving_module is not None
              else ServingModule(system, input_size))
    return module, getattr(module, "serve", None) or getattr(module, "predict")


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


def export_saved_model(system, config: ExperimentConfig, export_dir: str,
                       preprocessing: Optional[PhotoPreprocessing] = None) -> str:
    """Write a SavedModel to ``export_dir`` atomically (temp dir + rename); returns the path.

    Two signatures: ``serving_default`` (float images) and ``serving_bytes`` (encoded
    photos, prepared as the training data was: ``preprocessing``, by default
    ``photo_preprocessing.from_config(config)``).
    ``export_dir/assets/coopseg.json`` records class names, grades, input size and
    that preprocessing (``coopseg-predict`` reads it).
    """
    module, signature = serving_function(system, config.model.input_size)
    if preprocessing is None:
        preprocessing = photo_preprocessing.from_config(config)
    # An attribute of the module, so the function and its variables are saved with it.
    module.serve_bytes = bytes_signature(signature, config.model.input_size, preprocessing)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        tf.saved_model.save(module, tmp, signatures={FLOAT_SIGNATURE: signature,
                                                     BYTES_SIGNATURE: module.serve_bytes})
        meta = {"method": config.method, "name": config.name,
                "input_size": config.model.input_size,
                "num_grades": config.model.num_grades,
                "class_names": list(config.data.class_names),
                "input": "float32 RGB 0..255, [N, S, S, 3]; standardised in-graph",
                "signatures": {
                    FLOAT_SIGNATURE: "images: float32 RGB 0..255 [N, S, S, 3]",
                    BYTES_SIGNATURE: "image_bytes: string [N], encoded JPEG/PNG of any size"},
                "photo_preprocessing": preprocessing.to_dict()}
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        with open(os.path.join(tmp, "assets", "coopseg.json"), "w") as f:
            json.dump(meta, f, indent=2)
        if os.path.exists(export_dir):
            shutil.rmtree(export_dir)
        os.replace(tmp, export_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export_dir
