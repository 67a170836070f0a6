"""Tables III/IV, "VGG" (paper top-1 82.5, top-2 85.3, binary 89.5): keras.applications
VGG-19 (weights=None) trained alone on the graded set, with the input size, classifier batch
and LR schedule of every Table III row (``experiments.common.classification_row``).

    python -m experiments.run --suite=table3 --rows=vgg19_classifier --scale=small
    coopseg-train --experiment=vgg19_classifier --scale=small
"""
from experiments.common import classification_row


def get_config(scale: str = "paper"):
    return classification_row(scale, "vgg19")
