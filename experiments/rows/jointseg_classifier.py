"""Tables III/IV, "JointSeg [This work]" (paper top-1 85.1, top-2 88.1, binary 95.5):
JointSeg trained jointly; its classifier agent is what these tables evaluate.

Identical to ``jointseg`` except for the classification table's input size and
classifier batch, which all Table III rows share (``experiments.common``); at ``paper``
scale it *is* ``jointseg``.

    python -m experiments.run --suite=table3 --rows=jointseg_classifier --scale=small
    coopseg-train --experiment=jointseg_classifier --scale=small
"""
from experiments.common import classification_row


def get_config(scale: str = "paper"):
    return classification_row(scale, "jointseg")
