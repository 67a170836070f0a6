"""Two-step JointSeg: the encoder is first trained as a grader on the graded set
(``jointseg_encoder_pretrain``, clf_only), then JointSeg's segmenter alone from it — the
classic alternative to cooperation, with the very network of ``jointseg_seg_only`` (unlike
``unet_two_step``, whose segmenter is the Inception-UNet).

    python -m experiments.run --suite=data_efficiency --rows=jointseg_two_step --scale=small
"""
from experiments.common import two_step
from experiments.rows import jointseg_encoder_pretrain
from experiments.scales import experiment


def get_config(scale: str = "paper"):
    """The segmentation stage; its encoder comes from the ``jointseg_encoder_pretrain`` run
    (``train.init_encoder_from``: the runner sets it; by hand, pass it).

    By hand: ``coopseg-train --experiment=jointseg_encoder_pretrain --scale=small``, then
    ``coopseg-train --experiment=jointseg_two_step --scale=small
    --init_encoder_from=runs/jointseg_encoder_pretrain``.
    """
    return experiment(scale, train={"mode": "seg_only"})


def get_stages(scale: str = "paper"):
    return two_step(jointseg_encoder_pretrain.get_config(scale), get_config(scale))
