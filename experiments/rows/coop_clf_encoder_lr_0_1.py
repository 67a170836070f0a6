"""Cooperation option: the classifier agent moves the shared encoder at 0.1 x the rate it
moves its own head (``train.cooperation.clf_encoder_lr_scale``), the rest is ``jointseg``.
The paper has the encoder learned by both agents "at a different rate"; this separates
the classifier's rate on the encoder from its rate on its head.

    coopseg-train --experiment=coop_clf_encoder_lr_0_1 --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    config = jointseg_row(scale)
    config.train.cooperation.clf_encoder_lr_scale = 0.1
    return config
