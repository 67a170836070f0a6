"""The one place BatchNormalization layers are made, so every builder honours
``model.sync_batch_norm``.
"""
from __future__ import annotations

import tensorflow as tf


def batch_norm(name: str, momentum: float = 0.99, epsilon: float = 1e-3,
               synchronized: bool = False) -> tf.keras.layers.BatchNormalization:
    """A BatchNormalization layer; ``synchronized`` computes statistics over all replicas.

    Under a ``tf.distribute`` strategy each replica sees global_batch / replicas images,
    and plain BN normalises by that replica's own batch statistics, so N-replica training
    is not the same computation as single-device training on the global batch. With
    ``synchronized=True`` (Keras >= 2.12) the batch mean and variance are all-reduced
    across replicas (sum, sum of squares and count), which makes the two equal; outside
    a strategy, or at inference, it behaves like plain BN.
    """
    return tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon,
                                              synchronized=synchronized, name=name)
