"""The Keras dtype policy of a run: set before the models are built, reset afterwards.

Keras reads the global policy when a layer is *constructed*, hence::

    with use_precision(config):          # or: p = use_precision(config); ...; p.reset()
        system = build_system(config)
"""
from __future__ import annotations

from typing import Union

import tensorflow as tf

from coopseg.config import ExperimentConfig

FLOAT32 = "float32"


def policy_name(config: Union[ExperimentConfig, str]) -> str:
    """The Keras policy ``config`` asks for: ``train.mixed_precision``, "" meaning float32."""
    name = config if isinstance(config, str) else config.train.mixed_precision
    return name or FLOAT32


class use_precision:  # noqa: N801 - reads as a function call, works as a context manager
    """Set the global Keras policy for ``config`` now; ``reset()`` (or leaving the
    ``with`` block) restores the policy that was global before.

    ``train.mixed_precision`` only takes effect if the policy is set before
    ``build_system``; each layer then keeps its own policy (float32 variables,
    float16/bfloat16 compute) whatever the global policy is later. The global policy is
    process state: left at ``mixed_float16`` it would make every model built afterwards
    (the next test, the next experiment of a suite) half precision too, hence the reset.
    """

    def __init__(self, config: Union[ExperimentConfig, str]):
        self.previous = tf.keras.mixed_precision.global_policy().name
        self.name = policy_name(config)
        tf.keras.mixed_precision.set_global_policy(self.name)

    def reset(self) -> None:
        tf.keras.mixed_precision.set_global_policy(self.previous)

    def __enter__(self) -> "use_precision":
        return self

    def __exit__(self, *exc) -> None:
        self.reset()
