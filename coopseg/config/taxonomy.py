"""The fundus taxonomy every part shares: the lesion classes, their overlap priority,
the DR grades, the ignore label and the partial label of partially annotated sets."""
from __future__ import annotations

from typing import Tuple

from coopseg.config.errors import ConfigError

# The paper's mask set (Sec. III): background + five pathological features + artifacts.
LESION_CLASSES: Tuple[str, ...] = (
    "background",
    "hard_exudate",
    "soft_exudate",
    "haemorrhage",
    "microaneurysm",
    "drusen",
    "artifact",
)
# Where binary masks overlap, the first class in this list wins. Small, rare lesions
# come first so a microaneurysm drawn inside a haemorrhage or an exudate patch is kept.
LESION_PRIORITY: Tuple[str, ...] = (
    "microaneurysm",
    "haemorrhage",
    "hard_exudate",
    "soft_exudate",
    "drusen",
    "artifact",
)
NUM_GRADES = 5
IGNORE_LABEL = 255
# Partially annotated mask sets (a set that marks only some classes, e.g. exudates): a
# pixel no annotated class covers is "background or a class this set does not mark",
# stored as PARTIAL_LABEL_BASE + the bitmask of the annotated foreground classes (bit
# c - 1 for class c). The loss marginalises over the classes it may be, the metrics
# count it only for the annotated ones. Up to 7 foreground classes fit below 255.
PARTIAL_LABEL_BASE = 128
MAX_PARTIAL_CLASSES = 7


def partial_label(annotated: Tuple[int, ...]) -> int:
    """The label of an unmarked pixel of an image whose set annotates the foreground
    classes flagged in ``annotated`` (1/0 per class 1..C-1)."""
    if len(annotated) > MAX_PARTIAL_CLASSES:
        raise ConfigError(f"partially annotated mask sets support up to {MAX_PARTIAL_CLASSES} "
                          f"foreground classes, got {len(annotated)}")
    if not any(annotated):
        raise ConfigError("a mask set must annotate at least one foreground class")
    return PARTIAL_LABEL_BASE + sum(1 << i for i, flag in enumerate(annotated) if flag)
