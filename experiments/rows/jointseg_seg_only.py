"""JointSeg's segmenter (encoder + decoder with the PAG) trained alone, random init: the
reference every cooperation row is compared with in the data-efficiency suite. Same
network, steps, schedule and mask data as ``jointseg``; no classifier agent.

    python -m experiments.run --suite=data_efficiency --rows=jointseg_seg_only --scale=small
    coopseg-train --experiment=jointseg_seg_only --scale=small
"""
from experiments.scales import experiment


def get_config(scale: str = "paper"):
    return experiment(scale, train={"mode": "seg_only"})
