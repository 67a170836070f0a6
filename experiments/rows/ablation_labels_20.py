"""Partial-random-label ablation (paper Sec. II-C): JointSeg whose classifier agent sees 20 %
true grades, the rest random grades fixed per image by the data seed. The paper claims the
classifier's accuracy drops but segmentation does not suffer (vs ``jointseg``, 100 %).

    python -m experiments.run --suite=ablation_labels --rows=ablation_labels_20 --scale=small
    coopseg-train --experiment=ablation_labels_20 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, data={"clf_true_label_fraction": 0.2})
