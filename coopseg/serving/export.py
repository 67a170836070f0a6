"""SavedModel export with two serving signatures over the same weights.

``serving_default`` takes float32 RGB 0..255 ``[N, S, S, 3]``; ``serving_bytes`` takes
encoded photos of any size and prepares them in-graph (``coopseg.serving.preprocess``).
Both standardise in-graph, so a client (TF Serving, a plain ``tf.saved_model.load``)
needs no Python preprocessing. Inputs, outputs and a REST example: docs/serving.md.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Dict, Optional

import tensorflow as tf

from coopseg.config import ExperimentConfig
from coopseg.serving import photo_preprocessing
from coopseg.serving.photo_preprocessing import PhotoPreprocessing
from coopseg.serving.preprocess import prepare_encoded
from coopseg.utils.console import quiet_tensorflow_python_logs
from data_pipelines.provenance import training_data_record

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


def serving_size(config: ExperimentConfig) -> int:
    """The side of the images a served model takes: the segmenter's working resolution
    when it has one (``data.working_size``), else the model's input size."""
    return max(config.data.working_size, config.model.input_size)


def serving_function(system, input_size: int, working_size: int = 0):
    """``(module, fn)``: the tf.Module a SavedModel of ``system`` holds and its float
    serving function (float32 RGB 0..255 ``[N, S, S, 3]`` -> grade probabilities,
    grade, segmentation probabilities, class map; S = ``working_size`` when given, where
    the segmenter tiles the image). The per-image standardisation (paper Sec. III)
    happens inside it, so a client only resizes."""
    module = system.serving_module(input_size, working_size)
    return module, getattr(module, "serve", None) or getattr(module, "predict")


def export_saved_model(system, config: ExperimentConfig, export_dir: str,
                       preprocessing: Optional[PhotoPreprocessing] = None) -> str:
    """Write a SavedModel to ``export_dir`` atomically (temp dir + rename); returns the path.

    Two signatures: ``serving_default`` (float images) and ``serving_bytes`` (encoded
    photos, prepared as the training data was: ``preprocessing``, by default
    ``photo_preprocessing.from_config(config)``).
    ``export_dir/assets/coopseg.json`` records class names, grades, input size and
    that preprocessing (``coopseg-predict`` reads it).

    Mixed precision: the signatures stay float32 in and float32 out whatever policy the
    models were built under. The images are standardised in float32; each layer casts
    its input to its own compute dtype (Keras autocast: float16/bfloat16 inside the
    network), the logits layers compute in float32, and ``float32_outputs`` casts
    anything floating that is left, so a client never sees half precision.
    """
    module, signature = serving_function(system, config.model.input_size,
                                         config.data.working_size)
    size = serving_size(config)
    if preprocessing is None:
        preprocessing = photo_preprocessing.from_config(config)
    # An attribute of the module, so the function and its variables are saved with it.
    module.serve_bytes = bytes_signature(signature, size, preprocessing)
    parent = os.path.dirname(os.path.abspath(export_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        # mkdtemp makes the folder private (0700); an export is read by model servers
        # running as other users, so it gets the permissions of any other output.
        os.chmod(tmp, 0o777 & ~_umask())
        # The writer logs the temporary folder (gone a moment later) and renames
        # resource inputs nobody sees; the callers print the export's final path.
        with quiet_tensorflow_python_logs():
            tf.saved_model.save(module, tmp, signatures={FLOAT_SIGNATURE: signature,
                                                         BYTES_SIGNATURE: module.serve_bytes})
        meta = {"method": config.method, "name": config.name,
                # The side of the served images; the models' own input is model_input_size.
                "input_size": size,
                "model_input_size": config.model.input_size,
                "working_size": config.data.working_size,
                "num_grades": config.model.num_grades,
                "class_names": list(config.data.class_names),
                "input": "float32 RGB 0..255, [N, S, S, 3]; standardised in-graph",
                "signatures": {
                    FLOAT_SIGNATURE: "images: float32 RGB 0..255 [N, S, S, 3]",
                    BYTES_SIGNATURE: "image_bytes: string [N], encoded JPEG/PNG of any size"},
                "photo_preprocessing": preprocessing.to_dict(),
                "training_data": training_data_record(config.data)}
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
