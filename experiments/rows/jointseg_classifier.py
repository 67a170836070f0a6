"""Tables III/IV, "JointSeg [This work]" (paper top-1 85.1, top-2 88.1, binary 95.5):
JointSeg trained jointly, its classifier agent evaluated: ``jointseg`` but for the input size
and classifier batch all Table III rows share, so at ``paper`` scale it *is* ``jointseg``.

    python -m experiments.run --suite=table3 --rows=jointseg_classifier --scale=small
    coopseg-train --experiment=jointseg_classifier --scale=small
"""
from experiments.common import classification_row


def get_config(scale: str = "paper"):
    return classification_row(scale, "jointseg")
