"""Table I, "UNet" (paper mIoU 64.4): the Inception-UNet initialised from a grade classifier.

Two stages: ``jointseg_encoder_pretrain`` (JointSeg's encoder + classifier, clf_only on the
graded set), then the Inception-UNet seg_only, every ``encoder_*`` weight handed over by name.

    python -m experiments.run --suite=table1 --rows=unet_two_step --scale=small
"""
from experiments.common import segmentation_baseline, two_step
from experiments.rows import jointseg_encoder_pretrain


def get_config(scale: str = "paper"):
    """The segmentation stage; its encoder comes from the ``jointseg_encoder_pretrain`` run
    (``train.init_encoder_from``: the runner sets it; by hand, pass it).

    By hand: ``coopseg-train --experiment=jointseg_encoder_pretrain --scale=small``, then
    ``coopseg-train --experiment=unet_two_step --scale=small
    --init_encoder_from=runs/jointseg_encoder_pretrain``.
    """
    return segmentation_baseline(scale, "inception_unet")


def get_stages(scale: str = "paper"):
    return two_step(jointseg_encoder_pretrain.get_config(scale), get_config(scale))
