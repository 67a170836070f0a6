"""LR-ratio ablation below 1: the classifier agent's LR = 0.3 x the segmentation agent's, the
opposite direction from the paper's 30. On a real lesion set one seed of it segmented as well
as the segmenter alone and graded better; the data-efficiency suite measures it over seeds.

    python -m experiments.run --suite=data_efficiency --rows=ablation_lr_ratio_0_3 --scale=small
    coopseg-train --experiment=ablation_lr_ratio_0_3 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, train={"lr_ratio": 0.3})
