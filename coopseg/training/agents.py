"""An agent = a parameter set, a loss, and its own optimizer + LR schedule (paper Sec. II-A).

The classifier agent owns θ1 ∪ θ2 (encoder + classifier), the segmentation agent
θ1 ∪ θ3 (encoder + decoder): the encoder is learned by both, "at a different rate".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List

import tensorflow as tf

from coopseg.config import AgentConfig
from coopseg.training.schedules import PolynomialDecayWithWarmup


@dataclass
class Agent:
    """One learner of the cooperative step."""

    name: str
    model: tf.keras.Model  # image -> logits (end-to-end view over the agent's parameters)
    variables: List[tf.Variable]
    optimizer: tf.keras.optimizers.Optimizer
    schedule: PolynomialDecayWithWarmup
    loss_fn: Callable[..., tf.Tensor]
    weight_decay: float
    batch_size: int  # global batch size

    def learning_rate(self) -> float:
        """The rate the next update will use (read from the optimizer's own counter)."""
        return float(self.schedule(self.optimizer.iterations))


def make_optimizer(config: AgentConfig, schedule: PolynomialDecayWithWarmup,
                   mixed_precision: str = "") -> tf.keras.optimizers.Optimizer:
    """SGD with Nesterov momentum (TEFLA's default), optionally loss-scaled for float16."""
    opt = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=config.momentum,
                                  nesterov=config.nesterov, clipnorm=config.clipnorm)
    if mixed_precision == "mixed_float16":
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    return opt


def make_agent(name: str, model: tf.keras.Model, variables: List[tf.Variable],
               config: AgentConfig, total_steps: int, loss_fn: Callable[..., tf.Tensor],
               mixed_precision: str = "") -> Agent:
    """Build an agent whose schedule decays over ``total_steps`` of its own updates."""
    schedule = PolynomialDecayWithWarmup(config.learning_rate, total_steps,
                                         end_learning_rate=config.end_learning_rate,
                                         power=config.decay_power,
                                         warmup_steps=config.warmup_steps, name=f"{name}_lr")
    optimizer = make_optimizer(config, schedule, mixed_precision)
    return Agent(name=name, model=model, variables=list(variables), optimizer=optimizer,
                 schedule=schedule, loss_fn=loss_fn, weight_decay=config.weight_decay,
                 batch_size=config.batch_size)


def unique_variables(*groups: List[tf.Variable]) -> List[tf.Variable]:
    """Concatenate variable lists, dropping repeats (by identity), keeping order."""
    seen, out = set(), []
    for group in groups:
        for v in group:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out
