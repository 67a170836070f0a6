"""Every closed list of choices a config field takes, defined once: the schema's checks
and the command-line flags' enums both read them."""
from __future__ import annotations

from typing import Tuple

PAG_MODES: Tuple[str, ...] = ("none", "concat", "gated")
DECODER_BLOCKS: Tuple[str, ...] = ("residual_inception", "conv")
# Colour augmentation of the classifier agent's images (data_pipelines/augment.py):
# "tefla" = TEFLA's distort_color exactly, "paper" = the three jitters the paper names
# (hue, contrast, saturation) at TEFLA's ranges, "mild" = narrower hue/contrast/saturation
# ranges that keep lesion colours, "none" = off.
COLOR_JITTER_PRESETS: Tuple[str, ...] = ("tefla", "paper", "mild", "none")
# The user's word for which agents train (``TrainConfig.trains_classifier`` /
# ``trains_segmenter`` are what the code asks).
TRAIN_MODES: Tuple[str, ...] = ("joint", "seg_only", "clf_only")
# How the classifier agent's gradient on the shared encoder is reconciled with the
# segmentation agent's (coopseg/training/cooperation.py). "none" = the paper: each agent
# applies its own gradient.
GRADIENT_BALANCE: Tuple[str, ...] = ("none", "normalize", "pcgrad")
STRATEGIES: Tuple[str, ...] = ("default", "mirrored", "multi_worker", "tpu")
# "" = float32 everywhere.
MIXED_PRECISION_POLICIES: Tuple[str, ...] = ("", "mixed_float16", "mixed_bfloat16")
# Segmentation loss weighting: "none" is the paper's plain softmax cross-entropy.
SEG_CLASS_WEIGHTINGS: Tuple[str, ...] = ("none", "inverse_sqrt_frequency", "median_frequency")
