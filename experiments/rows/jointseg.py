"""JointSeg, cooperative training with the paper's settings (Tables I-IV, "JointSeg" rows).

    coopseg-train --experiment=jointseg --scale=paper --graded_train=... --masks_train=...
"""
from experiments.scales import experiment


def get_config(scale: str = "paper"):
    return experiment(scale, train={"mode": "joint"})
