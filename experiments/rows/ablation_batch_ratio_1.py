"""Batch-ratio ablation: JointSeg with equal classifier and segmentation batches (ratio 1;
paper: 32, the ``jointseg`` row at paper scale; the CPU scales use smaller defaults).

    python -m experiments.run --suite=ablation_batch_ratio --scale=small \\
        --rows=ablation_batch_ratio_1
    coopseg-train --experiment=ablation_batch_ratio_1 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, train={"batch_ratio": 1})
