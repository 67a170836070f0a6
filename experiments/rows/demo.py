"""The out-of-the-box demo: JointSeg on the embedded synthetic fundus set, CPU minutes.

    coopseg-train                      # same as: coopseg-train --experiment=demo
"""
from experiments.scales import experiment


def get_config(scale: str = "small"):
    return experiment(scale)
