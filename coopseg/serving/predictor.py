"""A trained model as one callable, from a SavedModel or a run's latest checkpoint.

Both sources go through the same serving function (``ServingModule.serve`` or a
method's own serving module), so ``coopseg-predict`` gives the same numbers whether
it is pointed at ``runs/demo`` or ``runs/demo/export``. Optional flip test-time
augmentation averages the probabilities of the photo and its mirror image.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.runs.run_dir import load_run
from coopseg.serving import photo_preprocessing
from coopseg.serving.export import FLOAT_SIGNATURE, serving_function, serving_size
from coopseg.serving.photo_preprocessing import PhotoPreprocessing
from data_pipelines.provenance import training_data_record

# Outputs that are probabilities or scores: averaged under test-time augmentation.
_SPATIAL = ("segmentation_probabilities",)
_PER_IMAGE = ("grade_probabilities", "class_scores")


@dataclass
class Predictor:
    """``predictor(images)``: float32 RGB 0..255 ``[N, S, S, 3]`` -> numpy outputs.

    Outputs (whichever heads the model has): ``grade_probabilities`` [N, G],
    ``grade`` [N], ``class_scores`` [N, L] (DecoupledNet's image-level labels),
    ``segmentation_probabilities`` [N, S, S, C], ``class_map`` [N, S, S].
    """

    serve: Callable[[tf.Tensor], Dict[str, tf.Tensor]]
    input_size: int
    class_names: Tuple[str, ...]
    num_grades: int
    preprocessing: PhotoPreprocessing  # what the training photos went through
    source: str
    # ``data_pipelines.provenance.training_data_record`` of the model's training sets;
    # None for exports made before it was recorded.
    training_data: Optional[Dict[str, Any]] = None
    # Keeps a loaded SavedModel alive: its signatures hold only weak references to
    # the variables.
    keep_alive: Any = field(default=None, repr=False)

    def __call__(self, images: np.ndarray, flip_tta: bool = False) -> Dict[str, np.ndarray]:
        out = _numpy(self.serve(tf.constant(images, tf.float32)))
        if not flip_tta:
            return out
        mirrored = _numpy(self.serve(tf.constant(images[:, :, ::-1], tf.float32)))
        return average_with_mirror(out, mirrored)


def average_with_mirror(out: Dict[str, np.ndarray],
                        mirrored: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Flip TTA: mean of the outputs for a photo and for its left-right mirror image.

    Maps of the mirror are flipped back first; the grade and class map are the argmax
    of the averaged probabilities (not a vote), so they agree with the CSV's numbers.
    """
    if "class_map" in out and "segmentation_probabilities" not in out:
        raise ConfigError("flip TTA needs segmentation probabilities; this model returns "
                          "only a class map")
    result = dict(out)
    for key in _PER_IMAGE:
        if key in out:
            result[key] = (out[key] + mirrored[key]) / 2
    for key in _SPATIAL:
        if key in out:
            result[key] = (out[key] + mirrored[key][:, :, ::-1]) / 2
    if "grade_probabilities" in result:
        result["grade"] = result["grade_probabilities"].argmax(-1).astype(np.int32)
    if "segmentation_probabilities" in result:
        result["class_map"] = result["segmentation_probabilities"].argmax(-1).astype(np.int32)
    return result


def _numpy(outputs: Dict[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    return {key: value.numpy() for key, value in outputs.items()}


def load_predictor(path: str) -> Predictor:
    """A Predictor from a SavedModel directory (``saved_model.pb``) or a run directory
    (``config.json`` + checkpoints). ConfigError says what ``path`` is missing."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _from_saved_model(path)
    if os.path.isfile(os.path.join(path, "config.json")):
        return _from_checkpoint(path)
    raise ConfigError(f"{path}: neither a SavedModel (no saved_model.pb) nor a coopseg run "
                      "directory (no config.json)")


def _from_saved_model(path: str) -> Predictor:
    meta_path = os.path.join(path, "assets", "coopseg.json")
    if not os.path.isfile(meta_path):
        raise ConfigError(f"{path} is a SavedModel but not coopseg's ({meta_path} is missing)")
    with open(meta_path) as f:
        meta = json.load(f)
    loaded = tf.saved_model.load(path)
    if FLOAT_SIGNATURE not in loaded.signatures:
        raise ConfigError(f"{path} has no {FLOAT_SIGNATURE!r} signature")
    signature = loaded.signatures[FLOAT_SIGNATURE]
    return Predictor(serve=lambda images: signature(images=images),
                     input_size=int(meta["input_size"]), class_names=tuple(meta["class_names"]),
                     num_grades=int(meta["num_grades"]),
                     # Exports from before it was recorded: the folder readers' whole frames.
                     preprocessing=PhotoPreprocessing.from_dict(
                         meta.get("photo_preprocessing", {})),
                     source=f"SavedModel {path}", training_data=meta.get("training_data"),
                     keep_alive=loaded)


def _from_checkpoint(model_dir: str) -> Predictor:
    config, system = load_run(model_dir)
    module, serve = serving_function(system, config.model.input_size,
                                     config.data.working_size)
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return Predictor(serve=serve, input_size=serving_size(config),
                     class_names=tuple(config.data.class_names),
                     num_grades=config.model.num_grades,
                     preprocessing=photo_preprocessing.from_config(config),
                     source=f"checkpoint {latest}",
                     training_data=training_data_record(config.data), keep_alive=module)

