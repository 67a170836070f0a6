"""Polynomial learning-rate decay with optional linear warm-up (TEFLA's PolyDecayPolicy).

    lr(t) = (lr0 - lr_end) * (1 - t / T) ** power + lr_end,   t clipped to [0, T]

Each agent of the cooperative step has its own schedule (paper Sec. III), driven by
its own optimizer's iteration counter, so a restored optimizer restores its rate.
"""
from __future__ import annotations

import tensorflow as tf


class PolynomialDecayWithWarmup(tf.keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``initial_learning_rate`` over ``warmup_steps``, then
    polynomial decay to ``end_learning_rate`` at ``decay_steps`` (counted from the start).

    The defaults, power 10 and lr_end 0, are TEFLA's (``tefla/core/lr_policy.py``:
    ``base_lr * (1 - iter_idx / (max_epoch * n_iters_per_epoch)) ** 10``).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 end_learning_rate: float = 0.0, power: float = 10.0, warmup_steps: int = 0,
                 name: str = "poly_decay"):
        super().__init__()
        if decay_steps < 1:
            raise ValueError(f"{name}: decay_steps must be >= 1, got {decay_steps}")
        if not 0 <= warmup_steps < decay_steps:
            raise ValueError(f"{name}: warmup_steps must be in [0, decay_steps), got {warmup_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)
        self.warmup_steps = int(warmup_steps)
        self.name = name

    def __call__(self, step) -> tf.Tensor:
        with tf.name_scope(self.name):
            t = tf.cast(step, tf.float32)
            total = tf.constant(float(self.decay_steps))
            frac = tf.minimum(t, total) / total
            decayed = ((self.initial_learning_rate - self.end_learning_rate)
                       * tf.pow(1.0 - frac, self.power) + self.end_learning_rate)
            if self.warmup_steps == 0:
                return decayed
            warm = self.initial_learning_rate * (t + 1.0) / float(self.warmup_steps)
            return tf.where(t < float(self.warmup_steps), warm, decayed)

    def get_config(self) -> dict:
        return dict(initial_learning_rate=self.initial_learning_rate, decay_steps=self.decay_steps,
                    end_learning_rate=self.end_learning_rate, power=self.power,
                    warmup_steps=self.warmup_steps, name=self.name)
