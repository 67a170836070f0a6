"""Stage 1 of the two-step Inception-UNet (Table I): the JointSeg encoder + classifier
trained as a grade classifier alone (``clf_only``), with the joint classifier agent's
steps, batch and LR. The UNet then starts from its ``encoder_*`` layers.

    python -m experiments.run --suite=table1 --rows=unet_two_step --scale=small
    coopseg-train --experiment=jointseg_encoder_pretrain --scale=small  # runs/<that name>
"""
from experiments.common import encoder_pretraining


def get_config(scale: str = "paper"):
    return encoder_pretraining(scale, "jointseg")
