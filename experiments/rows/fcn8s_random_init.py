"""Table II, "fcn-8s" (paper mIoU 15.3): FCN-8s trained from random init on the mask set.

    python -m experiments.run --suite=table2 --rows=fcn8s_random_init --scale=small
    coopseg-train --experiment=fcn8s_random_init --scale=small
"""
from experiments.common import segmentation_baseline


def get_config(scale: str = "paper"):
    return segmentation_baseline(scale, "fcn8s")
