"""Partial-random-label ablation, the extreme control: JointSeg whose classifier agent sees
no true grade (every grade random, fixed per image by the data seed). The paper tests only
20 % (``ablation_labels_20``); this row shows what the grades give segmentation at all.

    python -m experiments.run --suite=ablation_labels --rows=ablation_labels_0 --scale=small
    coopseg-train --experiment=ablation_labels_0 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, data={"clf_true_label_fraction": 0.0})
