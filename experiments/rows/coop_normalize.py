"""Cooperation option: the classifier agent's shared-encoder gradient rescaled to the
segmentation agent's norm each step (``train.cooperation.gradient_balance=normalize``,
``balance_target`` 1), the rest is ``jointseg``: neither agent's gradient dominates the
encoder by its size alone.

    coopseg-train --experiment=coop_normalize --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    config = jointseg_row(scale)
    config.train.cooperation.gradient_balance = "normalize"
    config.train.cooperation.balance_target = 1.0
    return config
