"""Cooperation option: PCGrad on the shared encoder (Yu et al. 2020, "Gradient Surgery
for Multi-Task Learning", arXiv:2001.06782): when the two agents' encoder gradients
conflict, each loses its component along the other's. The rest is ``jointseg``.

    coopseg-train --experiment=coop_pcgrad --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    config = jointseg_row(scale)
    config.train.cooperation.gradient_balance = "pcgrad"
    return config
