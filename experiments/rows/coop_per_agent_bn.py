"""Cooperation option: the classifier agent keeps its own BatchNorm moving statistics in
the shared encoder (``model.per_agent_batch_norm``); γ/β and every weight stay shared.
The rest is ``jointseg``.

    coopseg-train --experiment=coop_per_agent_bn --scale=small
"""
from experiments.common import jointseg_row


def get_config(scale: str = "paper"):
    return jointseg_row(scale, model={"per_agent_batch_norm": True})
