"""Model and schedule sizes per scale, shared by every experiment so rows stay comparable.

``paper``: the paper's 224 px input (resize 256, crop 224) and ratios, for a GPU.
``small``: 128 px, narrow widths, CPU-minutes budgets. ``tiny``: tests (seconds).
"""
from __future__ import annotations

import dataclasses

from coopseg.config import (AgentConfig, ConfigError, DataConfig, ExperimentConfig, ModelConfig,
                            RunConfig, TrainConfig)

SCALES = ("paper", "small", "tiny")


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {SCALES}")


def model_config(scale: str, **overrides) -> ModelConfig:
    _check_scale(scale)
    if scale == "paper":
        cfg = ModelConfig()
    elif scale == "small":
        cfg = ModelConfig(input_size=128, stem_filters=16, encoder_filters=(16, 32, 64, 96),
                          encoder_blocks=(1, 1, 1, 1), classifier_filters=96,
                          classifier_blocks=1, decoder_block="conv", bn_momentum=0.9)
    else:  # tiny
        cfg = ModelConfig(input_size=96, stem_filters=8, encoder_filters=(8, 16, 24),
                          encoder_blocks=(1, 1, 1), classifier_filters=24,
                          classifier_blocks=1, decoder_block="conv", classifier_dropout=0.0,
                          bn_momentum=0.9)
    return dataclasses.replace(cfg, **overrides)


# Colour jitter of the classifier agent per scale. ``paper``: TEFLA's distort_color.
# CPU scales: "mild" (docs/method.md: Deviations, measured there).
COLOR_JITTER = {"paper": "tefla", "small": "mild", "tiny": "mild"}


def data_config(scale: str, **overrides) -> DataConfig:
    _check_scale(scale)
    size = {"paper": 256, "small": 144, "tiny": 108}[scale]
    pad = {"paper": 16, "small": 8, "tiny": 4}[scale]
    return dataclasses.replace(DataConfig(resize_size=size, random_pad=pad,
                                          color_jitter=COLOR_JITTER[scale]), **overrides)


# The polynomial LR decay of the CPU scales: linear (power 1) to 1e-5 instead of TEFLA's
# power 10 to 0, which spends most of a few-hundred-step run at a negligible rate
# (docs/method.md: Deviations, measured there). ``paper`` keeps TEFLA's (AgentConfig).
CPU_DECAY = dict(decay_power=1.0, end_learning_rate=1e-5)


def train_config(scale: str, **overrides) -> TrainConfig:
    """The paper's ratios (lr x30, batch x32) at ``paper`` scale. CPU scales deviate,
    each for a measured reason (docs/method.md, Deviations): a smaller batch ratio to keep a step
    affordable; a high segmentation LR (0.1 with warm-up), because SGD from scratch
    learns no lesion in a few hundred steps at 0.005; hence a lower LR ratio (1.5),
    because the classifier does not learn at all at 30 x 0.05; and a class-weighted
    segmentation loss, because with plain cross-entropy every segmenter predicts only
    background in a few hundred steps. Every setting is per scale, never per method."""
    _check_scale(scale)
    if scale == "paper":
        cfg = TrainConfig(steps=20000, seg=AgentConfig(learning_rate=1e-3, batch_size=1),
                          batch_ratio=32)
    elif scale == "small":
        cfg = TrainConfig(steps=400, seg=AgentConfig(learning_rate=0.1, batch_size=4,
                                                     warmup_steps=40, **CPU_DECAY),
                          clf=AgentConfig(warmup_steps=40, **CPU_DECAY), lr_ratio=1.5,
                          batch_ratio=4, seg_class_weighting="inverse_sqrt_frequency")
    else:
        cfg = TrainConfig(steps=40, seg=AgentConfig(learning_rate=0.1, batch_size=2,
                                                    warmup_steps=5, **CPU_DECAY),
                          clf=AgentConfig(warmup_steps=5, **CPU_DECAY), lr_ratio=1.5,
                          batch_ratio=2, seg_class_weighting="inverse_sqrt_frequency")
    return dataclasses.replace(cfg, **overrides)


def run_config(scale: str, **overrides) -> RunConfig:
    """How often a run at ``scale`` logs, validates and checkpoints."""
    _check_scale(scale)
    cadence = {"paper": dict(eval_every=1000, checkpoint_every=1000),
               "small": dict(log_every=20, eval_every=200, checkpoint_every=200),
               "tiny": dict(log_every=10, eval_every=40, checkpoint_every=20,
                            image_summaries=1)}[scale]
    return RunConfig(**{**cadence, **overrides})


def experiment(scale: str, *, method: str = "jointseg", model=None, data=None,
               train=None, run=None) -> ExperimentConfig:
    """An experiment at ``scale`` with per-part field overrides (dicts)."""
    return ExperimentConfig(method=method,
                            model=model_config(scale, **(model or {})),
                            data=data_config(scale, **(data or {})),
                            train=train_config(scale, **(train or {})),
                            run=run_config(scale, **(run or {})))
