"""DecoupledNet and its DeconvNet baseline as ``ModelSystem``s: one trainer, two stages.

"Decoupled Deep Neural Network for Semi-supervised Semantic Segmentation" (Hong, Noh &
Han 2015, arXiv:1506.04924) trains in two decoupled stages (Sec. 2.2): the classifier
(``train.mode=clf_only``), then the segmenter on it, frozen (``seg_only`` with
``train.init_encoder_from``). Losses, SavedModel, and the stage-1 -> stage-2 hand-over.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import tensorflow as tf
from absl import logging

from coopseg.config import IGNORE_LABEL, ConfigError, ExperimentConfig, from_dict
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.decouplednet.deconvnet import build_deconvnet
from coopseg.models.decouplednet.network import (DecoupledNetInference,
                                                 build_decouplednet_classifier,
                                                 build_decouplednet_segmenter,
                                                 predict_with_true_classes)
from coopseg.models.layers.outputs import float32_outputs
from coopseg.models.system import ModelSystem


# ----------------------------------------------------------------------------- losses
def multilabel_loss(labels: tf.Tensor, logits: tf.Tensor,
                    global_batch_size: Optional[int] = None) -> tf.Tensor:
    """Stage 1 (e_c): sigmoid cross-entropy of multi-hot labels [B, L], mean over the
    classes per image, then averaged over the *global* batch (tf.distribute convention)."""
    per_example = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.float32), logits=tf.cast(logits, tf.float32)), axis=-1)
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def foreground_loss(class_masks: tf.Tensor, logits: tf.Tensor,
                    global_batch_size: Optional[int] = None,
                    class_weights: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Stage 2 (e_s): softmax cross-entropy of 2-channel logits [B, S, S, 2] vs z^l.

    ``class_masks`` [B, S, S] are a pair's mask of its class l (l + 1 = foreground,
    0 = background, IGNORE_LABEL ignored; see ``decoupled_inputs.expand_class_pairs``).
    Per pair the mean over its valid pixels, then averaged over the global batch.
    ``class_weights`` [num_seg_classes] (the trainer's, when
    ``train.seg_class_weighting`` is set) weigh each pixel by its class index, so
    class l's foreground gets the weight JointSeg or DeconvNet would give class l;
    None is the paper's unweighted loss.
    """
    masks = tf.cast(class_masks, tf.int32)
    valid = tf.not_equal(masks, IGNORE_LABEL)
    safe = tf.where(valid, masks, 0)
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(safe > 0, tf.int32), logits=tf.cast(logits, tf.float32))
    if class_weights is not None:
        pixel = pixel * tf.gather(tf.cast(class_weights, tf.float32), safe)
    validf = tf.cast(valid, tf.float32)
    per_example = (tf.reduce_sum(pixel * validf, axis=[1, 2])
                   / tf.maximum(tf.reduce_sum(validf, axis=[1, 2]), 1.0))
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


# ---------------------------------------------------------------------------- serving
class DecoupledNetServing(tf.Module):
    """What a DecoupledNet SavedModel holds: ``serve`` over float32 RGB 0..255 images.

    Outputs ``class_scores`` [N, L] (sigmoid), and unless ``segmenter`` is None (a
    stage-1 run, whose segmenter is untrained) ``segmentation_probabilities``
    [N, S, S, L+1] (channel 0 background, l+1 class l; see ``combine_class_masks``)
    and ``class_map`` int32 [N, S, S]. S and L come from ``classifier``; classes scored
    at least ``score_threshold`` are segmented. Standardisation happens in-graph, as in
    ``coopseg.models.serving_module.ServingModule``.
    """

    def __init__(self, classifier: tf.keras.Model, segmenter: Optional[tf.keras.Model],
                 score_threshold: float):
        super().__init__(name="decouplednet_serving")
        models = [classifier] + ([segmenter] if segmenter is not None else [])
        # Variables tracked, models and the inference function kept in closures: the
        # SavedModel then holds one traced signature, not Keras' per-layer functions.
        unique = {id(v): v for m in models for v in m.weights}
        self.model_variables = list(unique.values())
        if segmenter is None:
            self._predict = lambda x: {"class_scores": tf.sigmoid(classifier(x, training=False))}
        else:
            inference = DecoupledNetInference(classifier, segmenter, score_threshold)
            self._predict = lambda x: _serving_outputs(inference.predict(x))
        size = classifier.input_shape[1]
        spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        return float32_outputs(self._predict(tf.image.per_image_standardization(images)))


def _serving_outputs(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Inference outputs in coopseg's serving layout (probabilities channel-last)."""
    return {"class_scores": out["class_scores"],
            "segmentation_probabilities": tf.transpose(out["class_probs"], [0, 2, 3, 1]),
            "class_map": out["class_map"]}


# ---------------------------------------------------------------------------- systems
@dataclass
class DecoupledNetSystem(ModelSystem):
    """DecoupledNet's classifier and segmenter: multi-label classes (stage 1), per-class
    foreground masks (stage 2), the paper's inference and its own SavedModel."""

    # Image-level classes L (background excluded) and the inference's score threshold.
    num_classes: int = field(kw_only=True)
    score_threshold: float = field(kw_only=True)
    inference: Optional[DecoupledNetInference] = None
    # The segmenter the SavedModel serves: None in stage 1 (its segmenter is untrained).
    serve_segmenter: Optional[tf.keras.Model] = None

    predicts_by_softmax = False
    has_true_class_diagnostic = True

    def predict_classes(self, images: tf.Tensor) -> tf.Tensor:
        return self.inference.predict(images)["class_map"]

    def predict_classes_given_truth(self, images: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
        return predict_with_true_classes(self.seg_model, self.num_classes, images, masks)

    def serving_module(self, input_size: int, working_size: int = 0) -> tf.Module:
        # working_size is refused for DecoupledNet by ExperimentConfig.validate.
        return DecoupledNetServing(self.clf_model, self.serve_segmenter, self.score_threshold)


def build_decouplednet_system(config: ExperimentConfig) -> DecoupledNetSystem:
    """Classifier + segmenter (sharing the classifier's weights) for either stage."""
    if not config.stage:
        raise ConfigError("DecoupledNet trains in two decoupled stages (Hong et al. Sec. 2.2): "
                          "train.mode=clf_only, then seg_only with train.init_encoder_from "
                          "(--init_encoder_from) set to the stage-1 run")
    classifier = build_decouplednet_classifier(config)
    segmenter = build_decouplednet_segmenter(config, classifier)
    threshold = config.decoupled.score_threshold
    # Paper Sec. 2.2: stage 2 must not touch the classification network.
    classifier_ids = {id(v) for v in classifier.weights}
    leaked = [v.name for v in segmenter.trainable_variables if id(v) in classifier_ids]
    if leaked:
        raise RuntimeError(f"segmenter would train classifier weights {leaked[:5]}")
    return DecoupledNetSystem(
        config.method, classifier, segmenter,
        parts={"classifier": classifier, "segmenter": segmenter},
        scores_grades=False, image_label_threshold=threshold,
        num_classes=classifier.output_shape[-1], score_threshold=threshold,
        inference=DecoupledNetInference(classifier, segmenter, threshold),
        serve_segmenter=segmenter if config.stage == "segmenter" else None)


def build_deconvnet_system(config: ExperimentConfig) -> ModelSystem:
    """DeconvNet alone (Table 1 baseline): image -> logits over all classes, seg_only."""
    model = build_deconvnet(config)
    return ModelSystem(config.method, None, model, parts={config.method: model})


# ------------------------------------------------------------- stage 1 -> stage 2
_SHAPE_FIELDS = ("input_size", "num_classes", "width_multiplier", "fc_units", "vgg_batch_norm")


def _classifier_shape(config: ExperimentConfig) -> Dict[str, Any]:
    """What fixes the shape of the classifier ``config`` builds (``_SHAPE_FIELDS``) and
    its input adapter, which has no weights a checkpoint restore would check."""
    return {"input_size": config.model.input_size,
            "num_classes": len(config.data.class_names) - 1,
            "width_multiplier": config.decoupled.width_multiplier,
            "fc_units": config.decoupled.fc_units,
            "vgg_batch_norm": config.model.vgg_batch_norm,
            "input_adapter": input_adapter_kind(config)}


def stage1_run_dir(config: ExperimentConfig) -> str:
    """The stage-1 run a DecoupledNet stage 2 starts from: ``train.init_encoder_from`` (for
    DecoupledNet the pre-trained "encoder" is the whole classification network)."""
    return config.train.init_encoder_from


def restore_stage1_classifier(classifier: tf.keras.Model, config: ExperimentConfig) -> str:
    """Load the classifier weights of the stage-1 run's latest checkpoint (``stage1_run_dir``).

    The stage-1 run must be a DecoupledNet run of the same shape and classes; every
    classifier weight must be found in its checkpoint. Returns the checkpoint path.
    """
    run_dir = stage1_run_dir(config)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"stage-1 run {run_dir!r} is not a coopseg run "
                          f"directory ({config_path} is missing); train stage 1 there first")
    with open(config_path) as f:
        source = from_dict(json.load(f))
    if source.method != config.method:
        raise ConfigError(f"{run_dir} trained method {source.method!r}, not {config.method}")
    if tuple(source.data.class_names) != tuple(config.data.class_names):
        raise ConfigError(f"{run_dir} classifies {tuple(source.data.class_names[1:])}, this run "
                          f"{tuple(config.data.class_names[1:])}")
    theirs, ours = _classifier_shape(source), _classifier_shape(config)
    if theirs["input_adapter"] != ours["input_adapter"]:
        # The adapter has no weights, so a checkpoint restore would not notice: the frozen
        # classifier would see images ~57x off the scale it was trained on.
        raise ConfigError(
            f"the stage-1 classifier of {run_dir} was trained "
            + (f"from ImageNet weights (train.backbone_weights={source.train.backbone_weights!r}) "
               "behind the ImageNet input adapter; give stage 2 the same --backbone_weights "
               "(not read again: stage 2 restores the stage-1 classifier)"
               if theirs["input_adapter"] else
               "without train.backbone_weights (no ImageNet input adapter); stage 2 must not "
               "set it either"))
    different = [f"{k}: {theirs[k]} vs {ours[k]}" for k in _SHAPE_FIELDS
                 if theirs[k] != ours[k]]
    if different:
        raise ConfigError(f"the classifier of {run_dir} has another shape: {'; '.join(different)}")
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if latest is None:
        raise ConfigError(f"no checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    status = tf.train.Checkpoint(classifier=classifier).restore(latest)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as err:
        raise ConfigError(f"{latest} lacks classifier weights: {err}") from err
    status.expect_partial()  # its segmenter and optimizer are not wanted here
    logging.info("Restoring the stage-1 classifier (%d tensors) from %s",
                 len(classifier.weights), latest)
    return latest


def stage1_classifier_init_fn(config: ExperimentConfig,
                              system: ModelSystem) -> Optional[Callable[[], None]]:
    """The trainer's initialisation for a fresh DecoupledNet run (no checkpoint of its own).

    Stage 2 (``seg_only``) starts from the stage-1 classifier; stage 1 from scratch (or
    from ``train.backbone_weights``, loaded by ``coopseg.training.init``: None here).
    """
    if config.stage != "segmenter":
        if stage1_run_dir(config):
            raise ConfigError("train.init_encoder_from (--init_encoder_from) starts stage 2 "
                              f"(seg_only) from a stage-1 classifier; mode {config.train.mode} "
                              "trains the classifier itself (from scratch, or from "
                              "train.backbone_weights)")
        return None

    def init() -> None:
        if not stage1_run_dir(config):
            raise ConfigError("DecoupledNet stage 2 (seg_only) needs the stage-1 classifier: "
                              "set train.init_encoder_from (--init_encoder_from) to the "
                              "clf_only run's model_dir")
        restore_stage1_classifier(system.clf_model, config)

    return init
