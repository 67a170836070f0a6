"""Tables III/IV, "VGG" (paper top-1 82.5, top-2 85.3, binary 89.5): keras.applications
VGG-19 (weights=None) trained alone on the graded set.

Input size and classifier batch are those of every Table III row (see
``experiments.common.CLASSIFICATION_INPUT``); the initial LR is capped at the VGG
paper's 1e-2 because VGG-19 has no BatchNorm (``VGG19_MAX_LEARNING_RATE``).

    python -m experiments.run --suite=table3 --rows=vgg19_classifier --scale=small
    coopseg-train --experiment=vgg19_classifier --scale=small
"""
from experiments.common import classification_row


def get_config(scale: str = "paper"):
    return classification_row(scale, "vgg19")
