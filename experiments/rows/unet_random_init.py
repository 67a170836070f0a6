"""Table II, "Unet" (paper mIoU 25.4): the Inception-UNet trained from random init.

    python -m experiments.run --suite=table2 --rows=unet_random_init --scale=small
    coopseg-train --experiment=unet_random_init --scale=small
"""
from experiments.common import segmentation_baseline


def get_config(scale: str = "paper"):
    return segmentation_baseline(scale, "inception_unet")
