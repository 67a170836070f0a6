"""Each method as one task class, and the registry of them (``task_for``).

A task is what the trainer needs from a method: its models (a ``ModelSystem``, which
carries the losses, class prediction and serving module), its training inputs and how a
fresh run is initialised. A new method: its name in ``coopseg.config.METHODS``, a builder in
``coopseg/models/registry.py`` and a class here (tests/test_methods.py keeps them equal).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from coopseg.config import ConfigError, ExperimentConfig
from coopseg.models.decouplednet.system import stage1_classifier_init_fn
from coopseg.models.registry import build_system
from coopseg.models.system import ModelSystem
from coopseg.training.decoupled_inputs import build_decoupled_inputs
from coopseg.training.init import backbone_init_fn, two_step_init_fn
from coopseg.training.inputs import graded_and_mask_inputs
from coopseg.training.loop import Inputs
from data_pipelines.decode import DecodeReport


class Task:
    """A method that learns grades (softmax over ``model.num_grades``) and/or class-index
    masks from the graded and mask sets; subclasses name the method and its encoder."""

    method: str = ""
    # Layer-name prefix of the encoder a two-step run copies from a classifier run
    # (``train.init_encoder_from``); "" = the method has no two-step initialisation.
    encoder_prefix: str = ""

    def build_system(self, config: ExperimentConfig) -> ModelSystem:
        """The models, with the method's losses, class prediction and serving module."""
        return build_system(config)

    def build_inputs(self, config: ExperimentConfig, start_step: int = 0,
                     report: Optional[DecodeReport] = None) -> Inputs:
        """Training (and validation) datasets of the agents ``train.mode`` trains."""
        return graded_and_mask_inputs(config, start_step=start_step, report=report)

    def init_fn(self, config: ExperimentConfig,
                system: ModelSystem) -> Optional[Callable[[], None]]:
        """How a fresh run initialises ``system``; None = random initialisation."""
        return two_step_init_fn(config, system, self.encoder_prefix)


class JointSegTask(Task):
    method, encoder_prefix = "jointseg", "encoder_"


class FCN8sTask(Task):
    method, encoder_prefix = "fcn8s", "block"  # VGG-16's block1..5 convs


class InceptionUNetTask(Task):
    method, encoder_prefix = "inception_unet", "encoder_"  # JointSeg's encoder layers


class VGG16Task(Task):
    method = "vgg16"


class VGG19Task(Task):
    method = "vgg19"


class InceptionV3Task(Task):
    method = "inceptionv3"


class DeconvNetTask(Task):
    """DeconvNet learns from the strong (pixel-annotated) subset of the mask set."""

    method = "deconvnet"

    def build_inputs(self, config: ExperimentConfig, start_step: int = 0,
                     report: Optional[DecodeReport] = None) -> Inputs:
        return build_decoupled_inputs(config, start_step=start_step, report=report)


class DecoupledNetTask(DeconvNetTask):
    """DecoupledNet: image-level classes from the masks (stage 1), (image, class) pairs of
    the strong subset (stage 2), which starts from the stage-1 classifier run."""

    method = "decouplednet"

    def init_fn(self, config: ExperimentConfig,
                system: ModelSystem) -> Optional[Callable[[], None]]:
        stage1 = stage1_classifier_init_fn(config, system)
        return stage1 if stage1 is not None else backbone_init_fn(config, system)


TASKS: Dict[str, Task] = {task.method: task for task in (
    JointSegTask(), FCN8sTask(), InceptionUNetTask(), VGG16Task(), VGG19Task(),
    InceptionV3Task(), DeconvNetTask(), DecoupledNetTask())}


def task_for(config: ExperimentConfig) -> Task:
    """The task of ``config.method``; ConfigError names the choices."""
    if config.method not in TASKS:
        raise ConfigError(f"unknown method {config.method!r}; choose one of {', '.join(TASKS)}")
    return TASKS[config.method]


def build_inputs(config: ExperimentConfig, start_step: int = 0,
                 report: Optional[DecodeReport] = None) -> Inputs:
    """The training inputs of ``config``'s method (``Task.build_inputs``)."""
    return task_for(config).build_inputs(config, start_step=start_step, report=report)


def init_fn(config: ExperimentConfig, system: ModelSystem) -> Optional[Callable[[], None]]:
    """How a fresh run of ``config``'s method initialises ``system`` (``Task.init_fn``)."""
    return task_for(config).init_fn(config, system)
