"""LR-ratio ablation: JointSeg with the classifier agent's LR = 1 x the segmentation
agent's. The paper's ratio is 30 (row ``ablation_lr_ratio_30``); each scale's default is
the ``jointseg`` row (``paper``: 30; ``small`` and ``tiny``: 1.5).

    python -m experiments.run --suite=ablation_lr_ratio --rows=ablation_lr_ratio_1 --scale=small
    coopseg-train --experiment=ablation_lr_ratio_1 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, train={"lr_ratio": 1.0})
