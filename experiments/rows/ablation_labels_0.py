"""Partial-random-label ablation, the extreme control: JointSeg whose classifier agent
sees no true grade at all (every grade random, fixed per image by the data seed). The
paper only tests 20 % (``ablation_labels_20``); this row shows what the classifier
agent's labels contribute to segmentation at all (compare with ``jointseg``, 100 %).

    python -m experiments.run --suite=ablation_labels --rows=ablation_labels_0 --scale=small
    coopseg-train --experiment=ablation_labels_0 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, data={"clf_true_label_fraction": 0.0})
