"""The method table: every method coopseg trains, named once, with what the library needs
to know of it (heads, shared encoder, backbone, stages, builder, task). Everything else
reads this table; adding a method is its builder, its task and an entry here."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, Tuple

from coopseg.config.errors import ConfigError

# The ImageNet backbones a train.backbone_weights file can hold (the loader is
# coopseg/models/backbone_weights.py). Their names are also the Keras model names.
VGG16_BACKBONE = "vgg16"
VGG19_BACKBONE = "vgg19"
INCEPTIONV3_BACKBONE = "inceptionv3"
# The other methods' names, for the Keras models that carry them.
JOINTSEG, FCN8S, INCEPTION_UNET = "jointseg", "fcn8s", "inception_unet"
DECOUPLEDNET, DECONVNET = "decouplednet", "deconvnet"
CLASSIFIER, SEGMENTER = "classifier", "segmenter"


@dataclass(frozen=True)
class MethodSpec:
    """One method. ``builder`` and ``task`` are ``module:attribute`` paths, resolved when
    a model is built (``coopseg.models.registry``) or trained (``coopseg.training.tasks``),
    so this table imports nothing heavy."""

    name: str
    title: str
    heads: Tuple[str, ...]  # CLASSIFIER and/or SEGMENTER: the agents it can train
    builder: str
    task: str
    # Single-network methods (the paper's baselines): the ``module:function`` building
    # the Keras model that ``builder`` wraps.
    network: str = ""
    # Both heads on one encoder (JointSeg): the cooperation options and per-agent BN
    # statistics act there.
    shared_encoder: bool = False
    backbone: str = ""  # the ImageNet backbone train.backbone_weights must hold ("" = none)
    vgg_trunk: bool = False  # takes model.vgg_width_multiplier / model.vgg_batch_norm
    # Layer-name prefix of the encoder a two-step run copies from a classifier run
    # (train.init_encoder_from); "" = no two-step initialisation.
    encoder_prefix: str = ""
    # Hong et al.'s VGG-16 encoder-decoder family: five 2x2 poolings unpooled exactly
    # (input a multiple of 32), per-class segmentation (no working size), strong/weak
    # subsets of the mask set, which is all it reads.
    decoupled_family: bool = False
    # Trains in two stages: the classifier (clf_only), then the segmenter (seg_only)
    # starting from the stage-1 run (train.init_encoder_from), whose classifier it keeps.
    staged: bool = False
    # The segmenter sees one (image, class) pair at a time (DecoupledNet's stage 2).
    class_conditional: bool = False

    @property
    def has_classifier(self) -> bool:
        return CLASSIFIER in self.heads

    @property
    def has_segmenter(self) -> bool:
        return SEGMENTER in self.heads


_MODELS, _TASKS = "coopseg.models", "coopseg.training.tasks"
_BASELINES = f"{_MODELS}.baselines"
_SINGLE = f"{_MODELS}.registry:build_single_network_system"
_TABLE: Tuple[MethodSpec, ...] = (
    MethodSpec(JOINTSEG, "JointSeg", (CLASSIFIER, SEGMENTER),
               f"{_MODELS}.registry:build_jointseg_system", f"{_TASKS}:Task",
               shared_encoder=True, encoder_prefix="encoder_"),
    MethodSpec(FCN8S, "FCN-8s", (SEGMENTER,), _SINGLE, f"{_TASKS}:Task",
               network=f"{_BASELINES}.fcn8s:build_fcn8s", backbone=VGG16_BACKBONE,
               vgg_trunk=True, encoder_prefix="block"),  # VGG-16's block1..5 convs
    MethodSpec(INCEPTION_UNET, "Inception-UNet", (SEGMENTER,), _SINGLE, f"{_TASKS}:Task",
               network=f"{_BASELINES}.inception_unet:build_inception_unet",
               encoder_prefix="encoder_"),  # JointSeg's encoder layers
    MethodSpec(VGG16_BACKBONE, "VGG-16 (encoder pre-trainer)", (CLASSIFIER,), _SINGLE,
               f"{_TASKS}:Task", network=f"{_BASELINES}.classifiers:build_vgg16_classifier",
               backbone=VGG16_BACKBONE, vgg_trunk=True),
    MethodSpec(VGG19_BACKBONE, "VGG-19", (CLASSIFIER,), _SINGLE, f"{_TASKS}:Task",
               network=f"{_BASELINES}.classifiers:build_vgg19_classifier",
               backbone=VGG19_BACKBONE),
    MethodSpec(INCEPTIONV3_BACKBONE, "InceptionV3", (CLASSIFIER,), _SINGLE, f"{_TASKS}:Task",
               network=f"{_BASELINES}.classifiers:build_inceptionv3_classifier",
               backbone=INCEPTIONV3_BACKBONE),
    MethodSpec(DECOUPLEDNET, "DecoupledNet", (CLASSIFIER, SEGMENTER),
               f"{_MODELS}.decouplednet.system:build_decouplednet_system",
               f"{_TASKS}:DecoupledNetTask", backbone=VGG16_BACKBONE,
               decoupled_family=True, staged=True, class_conditional=True),
    MethodSpec(DECONVNET, "DeconvNet", (SEGMENTER,),  # DecoupledNet's Table 1 baseline
               f"{_MODELS}.decouplednet.system:build_deconvnet_system",
               f"{_TASKS}:DecoupledInputsTask", backbone=VGG16_BACKBONE,
               decoupled_family=True),
)
METHOD_SPECS: Dict[str, MethodSpec] = {spec.name: spec for spec in _TABLE}
METHODS: Tuple[str, ...] = tuple(METHOD_SPECS)
DEFAULT_METHOD = _TABLE[0].name
DECOUPLED_METHODS: Tuple[str, ...] = tuple(s.name for s in _TABLE if s.decoupled_family)
# Which ImageNet backbone each method's train.backbone_weights file must hold.
BACKBONE_OF_METHOD: Dict[str, str] = {s.name: s.backbone for s in _TABLE if s.backbone}


def method_spec(name: str) -> MethodSpec:
    """The table entry of method ``name``; ConfigError names the choices."""
    if name not in METHOD_SPECS:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHOD_SPECS[name]


def backbone_of(method: str) -> str:
    """The ImageNet backbone family of ``method``; ConfigError for methods without one."""
    if not method_spec(method).backbone:
        raise ConfigError(
            f"train.backbone_weights is not supported for method {method!r}: it has no "
            f"ImageNet backbone; supported methods: {', '.join(BACKBONE_OF_METHOD)}")
    return BACKBONE_OF_METHOD[method]


def resolve(path: str) -> Any:
    """The attribute a ``module:attribute`` path of the table names (imported now)."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
