"""Table I, "FCN-8s" (paper mIoU 55.3): FCN-8s initialised from a VGG-16 grade classifier.

Two stages: ``vgg16_pretrain`` (clf_only on the graded set), then FCN-8s seg_only on the
mask set with every ``block*`` weight handed over by name (checked: none may be missed).

    python -m experiments.run --suite=table1 --rows=fcn8s_two_step --scale=small
"""
from experiments.common import segmentation_baseline, two_step
from experiments.rows import vgg16_pretrain


def get_config(scale: str = "paper"):
    """The segmentation stage; its encoder comes from the ``vgg16_pretrain`` run
    (``train.init_encoder_from``: the runner sets it; by hand, pass it).

    By hand, stage by stage: ``coopseg-train --experiment=vgg16_pretrain --scale=small``,
    then ``coopseg-train --experiment=fcn8s_two_step --scale=small
    --init_encoder_from=runs/vgg16_pretrain``.
    """
    return segmentation_baseline(scale, "fcn8s")


def get_stages(scale: str = "paper"):
    return two_step(vgg16_pretrain.get_config(scale), get_config(scale))
