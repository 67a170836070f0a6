"""Stage 1 of the two-step FCN-8s (Table I): the VGG-16 trunk trained as a grade classifier.
Same trunk as FCN-8s layer for layer (``block*`` names), same classifier steps, batch and LR
as the JointSeg classifier agent. Normally run as part of ``fcn8s_two_step``:

    python -m experiments.run --suite=table1 --rows=fcn8s_two_step --scale=small
    coopseg-train --experiment=vgg16_pretrain --scale=small      # alone -> runs/vgg16_pretrain
"""
from experiments.common import encoder_pretraining


def get_config(scale: str = "paper"):
    return encoder_pretraining(scale, "vgg16")
