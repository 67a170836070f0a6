"""What the trainer needs from a method, as a task: its models, losses, training inputs
and how a fresh run is initialised. A method's entry in the method table
(``coopseg.config.methods``) names its task class; ``task_for`` makes one for a config.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import tensorflow as tf

from coopseg.config import ExperimentConfig, MethodSpec, method_spec
from coopseg.config.methods import resolve
from coopseg.models.decouplednet.system import (foreground_loss, multilabel_loss,
                                                stage1_classifier_init_fn)
from coopseg.models.losses import classification_loss, segmentation_loss
from coopseg.models.registry import build_system
from coopseg.models.system import ModelSystem
from coopseg.training.decoupled_inputs import build_decoupled_inputs
from coopseg.training.init import backbone_init_fn, two_step_init_fn
from coopseg.training.inputs import graded_and_mask_inputs
from coopseg.training.agent_inputs import Inputs
from data_pipelines.decode import DecodeReport


# An agent's cost: (labels, logits, global batch size) -> scalar loss.
LossFn = Callable[[tf.Tensor, tf.Tensor, int], tf.Tensor]


@dataclass(frozen=True)
class Losses:
    """The two agents' costs, as a task builds them."""

    classifier: LossFn
    segmenter: LossFn


class Task:
    """A method that learns grades (softmax over ``model.num_grades``) and/or class-index
    masks from the graded and mask sets, as its table entry ``spec`` describes."""

    def __init__(self, spec: MethodSpec):
        self.spec = spec

    def build_losses(self, config: ExperimentConfig, class_weights: tf.Variable) -> Losses:
        """Softmax cross-entropy over grades; per-pixel softmax cross-entropy over the
        classes (marginal over the classes a partially annotated image's set does not
        mark), weighted by ``class_weights`` [num_seg_classes] (filled by the trainer
        from the training masks) unless ``train.seg_class_weighting`` is none."""
        return Losses(classification_loss,
                      functools.partial(segmentation_loss,
                                        class_weights=self._weights(config, class_weights)))

    @staticmethod
    def _weights(config: ExperimentConfig, class_weights: tf.Variable) -> Optional[tf.Variable]:
        return class_weights if config.train.seg_class_weighting != "none" else None

    def build_system(self, config: ExperimentConfig) -> ModelSystem:
        """The models, with the method's losses, class prediction and serving module."""
        return build_system(config)

    def build_inputs(self, config: ExperimentConfig, start_step: int = 0,
                     report: Optional[DecodeReport] = None) -> Inputs:
        """Training (and validation) datasets of the agents ``train`` trains."""
        return graded_and_mask_inputs(config, start_step=start_step, report=report)

    def init_fn(self, config: ExperimentConfig,
                system: ModelSystem) -> Optional[Callable[[], None]]:
        """How a fresh run initialises ``system``; None = random initialisation."""
        return two_step_init_fn(config, system, self.spec.encoder_prefix)


class DecoupledInputsTask(Task):
    """Hong et al.'s family learns from the mask set alone: strong (pixel-annotated)
    and weak (image-level) subsets of it (DeconvNet: the strong one)."""

    def build_inputs(self, config: ExperimentConfig, start_step: int = 0,
                     report: Optional[DecodeReport] = None) -> Inputs:
        return build_decoupled_inputs(config, start_step=start_step, report=report)


class DecoupledNetTask(DecoupledInputsTask):
    """DecoupledNet: image-level classes from the masks (stage 1), (image, class) pairs of
    the strong subset (stage 2), which starts from the stage-1 classifier run."""

    def build_losses(self, config: ExperimentConfig, class_weights: tf.Variable) -> Losses:
        """Sigmoid cross-entropy over image-level classes (stage 1); per-pixel foreground
        cross-entropy of the one class each (image, class) pair asks for (stage 2)."""
        return Losses(multilabel_loss,
                      functools.partial(foreground_loss,
                                        class_weights=self._weights(config, class_weights)))

    def init_fn(self, config: ExperimentConfig,
                system: ModelSystem) -> Optional[Callable[[], None]]:
        stage1 = stage1_classifier_init_fn(config, system)
        return stage1 if stage1 is not None else backbone_init_fn(config, system)


def task_for(config: ExperimentConfig) -> Task:
    """The task of ``config.method`` (its table entry's task class); ConfigError names
    the choices for an unknown method."""
    spec = method_spec(config.method)
    return resolve(spec.task)(spec)


def build_inputs(config: ExperimentConfig, start_step: int = 0,
                 report: Optional[DecodeReport] = None) -> Inputs:
    """The training inputs of ``config``'s method (``Task.build_inputs``)."""
    return task_for(config).build_inputs(config, start_step=start_step, report=report)


def init_fn(config: ExperimentConfig, system: ModelSystem) -> Optional[Callable[[], None]]:
    """How a fresh run of ``config``'s method initialises ``system`` (``Task.init_fn``)."""
    return task_for(config).init_fn(config, system)
