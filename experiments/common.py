"""Shared building blocks of the paper's rows (Tables I-IV) and ablations.

Every row is built from ``experiments.scales.experiment(scale, ...)`` so rows of one
table differ only in what the paper varies (model, initialisation, one ablated knob):
same step budget, seed, data, input size, segmentation batch and LR schedule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

from coopseg.config import ConfigError, ExperimentConfig
from experiments.scales import experiment, model_config

# FCN-8s / VGG-16 widths. ``small`` keeps a quarter of the VGG widths so a CPU can train
# the two-step FCN-8s in minutes (full width: ~134 M parameters); ``paper`` is the
# published net. Only model size changes: budget and schedule stay the table's.
VGG_WIDTH: Dict[str, float] = {"paper": 1.0, "small": 0.25, "tiny": 0.0625}

# Table III/IV (VGG-19, InceptionV3, JointSeg's classifier) share one input size: the
# scale's, except at ``small``, where 96 px replaces 128 px because the full-width
# VGG-19 (keras.applications has no width knob) costs ~0.2 TFLOP per step even at 96 px
# and batch 16 (measured 16-29 s per step on the shared 2-core machine; 34 s at 128 px).
# keras.applications' InceptionV3 needs >= 75 px, and JointSeg's encoder a multiple of
# 2 ** (levels + 1) (32 at small).
CLASSIFICATION_INPUT_CAP: Dict[str, int] = {"small": 96}
# = coopseg.models.baselines.classifiers.INCEPTIONV3_MIN_SIZE, repeated so that loading a config
# does not import TensorFlow (tests check the two agree).
INCEPTIONV3_MIN_SIZE = 75
# Classifier batch of the classification table = seg batch x this ratio (all three rows);
# ``small`` halves the scale's ratio (clf batch 8) for the same reason. Other scales keep
# their own ratio (paper: 32).
CLASSIFICATION_BATCH_RATIO: Dict[str, int] = {"small": 2}


@dataclass
class Stage:
    """One training run of a row. A row is an ordered list of stages (most rows have
    one); ``experiments.run`` runs a row's stages in order."""

    name: str
    config: ExperimentConfig


def single_stage(config: ExperimentConfig) -> List[Stage]:
    return [Stage("train", config)]


def segmentation_baseline(scale: str, method: str) -> ExperimentConfig:
    """``method`` (fcn8s | inception_unet) trained alone on the mask set (seg_only)."""
    model = {"vgg_width_multiplier": VGG_WIDTH[scale]} if method == "fcn8s" else {}
    return experiment(scale, method=method, model=model, train={"mode": "seg_only"})


def encoder_pretraining(scale: str, method: str) -> ExperimentConfig:
    """Stage 1 of a two-step row: ``method``'s classifier on the graded set (clf_only).

    ``vgg16`` shares FCN-8s' VGG-16 trunk layer for layer; ``jointseg`` in clf_only mode
    trains the JointSeg encoder + classifier, whose encoder the Inception-UNet reuses.
    The classifier agent's LR and batch come from the same ratios as the joint model's.
    """
    model = {"vgg_width_multiplier": VGG_WIDTH[scale]} if method == "vgg16" else {}
    return experiment(scale, method=method, model=model, train={"mode": "clf_only"})


def two_step(pretrain: ExperimentConfig, segment: ExperimentConfig) -> List[Stage]:
    """The paper's "pre-trained" baseline (Table I): classifier first, then segmenter.

    ``pretrain`` trains an encoder as a grade classifier (clf_only) with exactly the
    classifier steps and batch the joint model's classifier agent gets, so the two-step
    baseline sees the same graded data budget as JointSeg; ``segment`` (seg_only) starts
    from it, ``train.init_encoder_from`` = the pretrain stage's run directory (wired by
    ``experiments.runner``).
    """
    if pretrain.train.steps != segment.train.steps:
        raise ValueError("two-step stages must share the table's step budget")
    return [Stage("pretrain", pretrain), Stage("segment", segment)]


def classification_input_size(scale: str) -> int:
    """The input size of every Table III/IV row at ``scale`` (see CLASSIFICATION_INPUT_CAP)."""
    size = min(model_config(scale).input_size, CLASSIFICATION_INPUT_CAP.get(scale, 10 ** 6))
    if size < INCEPTIONV3_MIN_SIZE:
        raise ConfigError(f"the classification table needs input_size >= {INCEPTIONV3_MIN_SIZE} "
                          f"px (InceptionV3); scale {scale!r} has {size}")
    return size


def _classification_sizes(scale: str) -> dict:
    size = classification_input_size(scale)
    # A smaller crop keeps the paper's resize/crop proportion (256 -> 224).
    resized = size != model_config(scale).input_size
    return {"model": {"input_size": size},
            "data": {"resize_size": round(size * 256 / 224)} if resized else {},
            "train": ({"batch_ratio": CLASSIFICATION_BATCH_RATIO[scale]}
                      if scale in CLASSIFICATION_BATCH_RATIO else {})}


def classification_row(scale: str, method: str) -> ExperimentConfig:
    """A row of Tables III/IV: ``jointseg`` (joint training, its classifier agent is
    evaluated) or a keras.applications classifier trained alone (clf_only)."""
    sizes = _classification_sizes(scale)
    mode = "joint" if method == "jointseg" else "clf_only"
    # Every row's classifier optimiser is the joint classifier agent's (derived from the
    # same ratios): same batch, LR schedule, momentum and weight decay.
    return experiment(scale, method=method, model=sizes["model"], data=sizes["data"],
                      train={**sizes["train"], "mode": mode})


def jointseg_row(scale: str, *, model: dict = None, data: dict = None,
                 train: dict = None) -> ExperimentConfig:
    """JointSeg (joint training, random init) with one ablated knob changed."""
    return experiment(scale, model=model, data=data, train={"mode": "joint", **(train or {})})


def batch_ratio_mid(scale: str) -> int:
    """The middle value of the batch-ratio ablation: paper 4 (between 1 and 32),
    small 2 (between 1 and 4); tiny has no integer between 1 and 2 and uses 1."""
    return {"paper": 4, "small": 2, "tiny": 1}[scale]
