"""One seed for a whole run, and TensorFlow's op determinism while it trains.

    with reproducible_run(config):
        system = build_system(config)
        ...
"""
from __future__ import annotations

import tensorflow as tf
from absl import logging
from tensorflow.python.framework import config as tf_config

from coopseg.config import ExperimentConfig


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's op determinism is on in this process."""
    return bool(tf_config.is_op_determinism_enabled())


class reproducible_run:  # noqa: N801 - reads as a function call, works as a context manager
    """Seed everything from ``train.seed``; with ``run.deterministic`` enable op
    determinism until the block ends (if it was off before).

    ``train.seed`` seeds Python's ``random``, NumPy and TensorFlow (``set_random_seed``)
    before any model is built, so weight initialisation, data order and augmentation
    all follow it. Op determinism replaces kernels with a non-deterministic
    implementation (on GPUs: cuDNN convolution algorithms, atomics in reductions and
    scatters) by deterministic ones, or the op raises instead of silently differing
    between runs. It is process state, so it is switched back off when the run ends
    (the next test or suite row decides anew).
    """

    def __init__(self, config: ExperimentConfig):
        self.seed = config.train.seed
        self.deterministic = config.run.deterministic
        self._enabled_here = False

    def __enter__(self) -> "reproducible_run":
        tf.keras.utils.set_random_seed(self.seed)
        if self.deterministic and not op_determinism_enabled():
            tf.config.experimental.enable_op_determinism()
            self._enabled_here = True
            logging.info("Op determinism on (run.deterministic): seed %d", self.seed)
        return self

    def __exit__(self, *exc) -> None:
        if self._enabled_here:
            tf_config.disable_op_determinism()
