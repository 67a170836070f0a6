"""LR-ratio ablation: JointSeg with the classifier agent's LR = 30 x the segmentation
agent's, the paper's ratio (Sec. III), at every scale. At ``paper`` scale this is the
``jointseg`` row itself (the runner reuses it); the CPU scales' default is 1.5.

    python -m experiments.run --suite=ablation_lr_ratio --rows=ablation_lr_ratio_30 --scale=small
    coopseg-train --experiment=ablation_lr_ratio_30 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, train={"lr_ratio": 30.0})
