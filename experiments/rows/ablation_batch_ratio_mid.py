"""Batch-ratio ablation: JointSeg with a classifier batch between 1x and the scale's
default (paper 4 of 32; small 2 of 4; see ``experiments.common.batch_ratio_mid``).

    python -m experiments.run --suite=ablation_batch_ratio --scale=small \\
        --rows=ablation_batch_ratio_mid
    coopseg-train --experiment=ablation_batch_ratio_mid --scale=small
"""
from experiments.common import batch_ratio_mid, jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, train={"batch_ratio": batch_ratio_mid(scale)})
