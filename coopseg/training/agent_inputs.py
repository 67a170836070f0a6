"""``Inputs``: the batched datasets a training run gives its agents (training and
validation, for the classifier and the segmenter)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import tensorflow as tf


@dataclass
class Inputs:
    """Batched datasets for the two agents. Train sets repeat forever."""

    clf_train: Optional[tf.data.Dataset] = None
    seg_train: Optional[tf.data.Dataset] = None
    clf_val: Optional[tf.data.Dataset] = None
    seg_val: Optional[tf.data.Dataset] = None
