"""Building blocks of DecoupledNet's Table 1 rows (Hong et al. 2015, arXiv:1506.04924).

A row trains DecoupledNet's classifier (stage 1, clf_only) and then its segmenter (stage 2,
seg_only, restoring the classifier from stage 1's run), or DeconvNet alone; sizes per scale
are in ``_sizes`` (our choices where the paper is silent, docs/decouplednet.md).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

from coopseg.config import AgentConfig, DecoupledConfig, ExperimentConfig
from experiments.common import Stage
from experiments.scales import data_config, model_config, run_config, train_config

# Hong et al.'s recipe augments by random crops (of the resized image) and left/right
# mirroring only: no colour jitter, no up/down flip, no padding, in both stages. The
# JointSeg (TEFLA) augmentation of experiments/scales.py is switched off here.
HONG_AUGMENTATION = dict(random_pad=0, flip_up_down=False, flip_left_right=True,
                         color_jitter="none", affine=False)


def _sizes(scale: str) -> Tuple[dict, dict, DecoupledConfig, dict, dict, Dict[str, int]]:
    """(model, data, decoupled, train, run, steps per mode) of DecoupledNet/DeconvNet.

    ``paper`` = the authors' Caffe recipe (VGG-16, 350 px resize, random 320 crops and
    mirroring, SGD lr 0.01, momentum 0.9, weight decay 5e-4; batch and steps ours);
    ``small`` = 128 px crops of 144 px images, VGG widths / 8, fc 256, a few CPU minutes
    per stage; ``tiny`` = tests. The segmentation loss is weighted per class as
    experiments/scales.py sets for every method.
    """
    if scale == "paper":
        sgd = dict(learning_rate=0.01, end_learning_rate=1e-4, momentum=0.9, nesterov=False,
                   weight_decay=5e-4, decay_power=1.0)
        return ({"input_size": 320}, {"resize_size": 350, **HONG_AUGMENTATION}, DecoupledConfig(),
                dict(seg=AgentConfig(batch_size=16, **sgd), clf=AgentConfig(batch_size=32, **sgd)),
                dict(eval_every=2000, checkpoint_every=1000),
                {"clf_only": 20000, "seg_only": 20000})
    if scale == "small":
        # Measured here (synthetic fundus, 128 px, from scratch): the classifier learns
        # at the recipe's 0.01 and only its label priors at 0.1; segmenters need the CPU
        # rate of experiments/scales.py (0.1 + warm-up) to learn anything in minutes.
        recipe = dict(momentum=0.9, nesterov=False, weight_decay=5e-4, decay_power=1.0)
        return ({"input_size": 128}, {"resize_size": 144, **HONG_AUGMENTATION},
                DecoupledConfig(width_multiplier=1 / 8, fc_units=256, bridge_filters=64),
                dict(seg=AgentConfig(batch_size=8, learning_rate=0.1, end_learning_rate=1e-3,
                                     warmup_steps=40, **recipe),
                     clf=AgentConfig(batch_size=8, learning_rate=0.01, end_learning_rate=1e-4,
                                     **recipe)),
                dict(log_every=20, eval_every=200, checkpoint_every=200),
                {"clf_only": 400, "seg_only": 600})
    recipe = dict(learning_rate=0.01, end_learning_rate=1e-3, momentum=0.9, nesterov=False,
                  weight_decay=5e-4, decay_power=1.0)
    return ({"input_size": 32}, {"resize_size": 36, **HONG_AUGMENTATION},
            DecoupledConfig(width_multiplier=1 / 16, fc_units=16, bridge_filters=8, dropout=0.0),
            dict(seg=AgentConfig(batch_size=2, **recipe), clf=AgentConfig(batch_size=4, **recipe)),
            dict(log_every=2, eval_every=4, checkpoint_every=4, image_summaries=1),
            {"clf_only": 4, "seg_only": 4})


def decoupled_experiment(scale: str, *, method: str, mode: str,
                         strong_per_class: int) -> ExperimentConfig:
    """One DecoupledNet (or DeconvNet) stage at ``scale``; data paths are left to the caller."""
    model, data, decoupled, train, run, steps = _sizes(scale)
    stage_steps = steps["clf_only" if mode == "clf_only" else "seg_only"]
    decoupled.strong_per_class = strong_per_class
    return ExperimentConfig(method=method, model=model_config(scale, **model),
                            data=data_config(scale, **data),
                            train=train_config(scale, mode=mode, steps=stage_steps,
                                               derive_clf_from_ratios=False, **train),
                            decoupled=decoupled, run=run_config(scale, **run))


def decouplednet_stages(scale: str, strong_per_class: int,
                        classifier_on_strong_only: bool = False) -> List[Stage]:
    """DecoupledNet: the classifier on the image-level labels of every training image
    (``classifier_on_strong_only``: of the strong images only, DecoupledNet-Str), then
    the segmenter on ``strong_per_class`` strong annotations per class (0 = all).

    The runner hands the classifier's run directory to the segmenter as
    ``train.init_encoder_from``, which DecoupledNet's stage 2 restores its frozen
    classifier from. All DecoupledNet rows share one classifier, and DecoupledNet-Str
    "full" is DecoupledNet "full": the runner trains equal stages once.
    """
    clf_n = strong_per_class if classifier_on_strong_only else 0
    return [Stage("classifier", decoupled_experiment(
                scale, method="decouplednet", mode="clf_only", strong_per_class=clf_n)),
            Stage("segmenter", decoupled_experiment(
                scale, method="decouplednet", mode="seg_only", strong_per_class=strong_per_class))]


def deconvnet_stages(scale: str, strong_per_class: int) -> List[Stage]:
    """DeconvNet, the encoder-decoder alone, on ``strong_per_class`` strong images per class."""
    return [Stage("train", decoupled_experiment(scale, method="deconvnet", mode="seg_only",
                                                strong_per_class=strong_per_class))]
