"""Tables III/IV, "InceptionV3" (paper top-1 84.3, top-2 87.2, binary 94.7):
keras.applications InceptionV3 (weights=None) trained alone on the graded set, with the
JointSeg classifier agent's batch and LR schedule.

    python -m experiments.run --suite=table3 --rows=inceptionv3_classifier --scale=small
    coopseg-train --experiment=inceptionv3_classifier --scale=small
"""
from experiments.common import classification_row


def get_config(scale: str = "paper"):
    return classification_row(scale, "inceptionv3")
