"""The cooperative training step: both agents in one ``tf.function`` (paper Sec. II-A, Eq. 2).

    J_clf = min_{θ1 ∪ θ2} Cost(C(M(x_clf)), y_clf)
    J_seg = min_{θ1 ∪ θ3} Cost(S(M(x_seg)), y_seg)

``seg_only``/``clf_only`` are the same step with one agent (the baselines, two-step).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow as tf

from coopseg.training.agents import Agent
from coopseg.training.cooperation import EncoderGradientPolicy
from coopseg.models.losses import l2_penalty


def _agent_update(agent: Agent, images: tf.Tensor, labels: tf.Tensor):
    """Forward + gradient of one agent; the update is applied by the caller."""
    with tf.GradientTape() as tape:
        logits = agent.model(images, training=True)
        task_loss = agent.loss_fn(labels, logits, agent.batch_size)
        loss = task_loss + l2_penalty(agent.variables, agent.weight_decay)
        scaled = (agent.optimizer.get_scaled_loss(loss)
                  if isinstance(agent.optimizer, tf.keras.mixed_precision.LossScaleOptimizer)
                  else loss)
    grads = tape.gradient(scaled, agent.variables)
    if isinstance(agent.optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
        grads = agent.optimizer.get_unscaled_gradients(grads)
    return task_loss, loss, grads


class CooperativeStep(tf.Module):
    """One training step over whichever agents are present (joint, seg_only, clf_only).

    Step order (the paper does not say; docs/method.md): both agents compute their
    gradients from the *same* parameters, then the classifier's update and the
    segmentation agent's update are applied. The shared encoder θ1 therefore moves by
    the sum of both agents' steps, each with its own learning rate and momentum.
    BatchNorm runs in training mode in both forward passes (each agent's batch updates
    the encoder's moving statistics).

    ``all_finite`` latches to False the first time any loss is NaN/Inf, so the loop
    can refuse to checkpoint a diverged model without syncing every step.
    """

    def __init__(self, clf_agent: Optional[Agent], seg_agent: Optional[Agent],
                 jit_compile: bool = False,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 encoder_policy: Optional[EncoderGradientPolicy] = None):
        super().__init__(name="cooperative_step")
        if clf_agent is None and seg_agent is None:
            raise ValueError("CooperativeStep needs at least one agent")
        self.clf_agent = clf_agent
        self.seg_agent = seg_agent
        # Only meaningful between two agents; a one-agent step has nothing to reconcile.
        self.encoder_policy = (encoder_policy if clf_agent is not None and seg_agent is not None
                               else None)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.all_finite = tf.Variable(True, trainable=False, name="all_finite")
        # XLA compiles the per-replica body; the outer function only distributes it.
        self._replica_step = (tf.function(self._train_step, jit_compile=True) if jit_compile
                              else self._train_step)
        self._step = tf.function(self._distributed_step)

    def __call__(self, clf_batch: Optional[Tuple[tf.Tensor, tf.Tensor]],
                 seg_batch: Optional[Tuple[tf.Tensor, tf.Tensor]]) -> Dict[str, tf.Tensor]:
        return self._step(clf_batch, seg_batch)

    def _distributed_step(self, clf_batch, seg_batch) -> Dict[str, tf.Tensor]:
        per_replica = self.strategy.run(self._replica_step, args=(clf_batch, seg_batch))
        # Losses are per-replica shares of the global-batch mean (summed); gradient norms
        # and cosines are already global on every replica (taken after the all-reduce).
        metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN
                                           if k.endswith(("grad_norm", "cosine")) else
                                           tf.distribute.ReduceOp.SUM, v, axis=None)
                   for k, v in per_replica.items()}
        finite = tf.reduce_all([tf.math.is_finite(v) for k, v in metrics.items()
                                if k.endswith(("total_loss", "grad_norm"))])
        self.all_finite.assign(tf.logical_and(self.all_finite, finite))
        return metrics

    def _train_step(self, clf_batch, seg_batch) -> Dict[str, tf.Tensor]:
        # Python-level branches: resolved once at trace time, never in the graph.
        metrics: Dict[str, tf.Tensor] = {}
        updates = {}
        for key, agent, batch in (("clf", self.clf_agent, clf_batch),
                                  ("seg", self.seg_agent, seg_batch)):
            if agent is None:
                continue
            task_loss, total_loss, grads = _agent_update(agent, *batch)
            grads_and_vars = list(zip(grads, agent.variables))
            if self.strategy.num_replicas_in_sync > 1:
                # The all-reduce apply_gradients would do, done here so the logged norm
                # is that of the global-batch gradient, not a sum of replica norms.
                grads_and_vars = agent.optimizer.aggregate_gradients(grads_and_vars)
            updates[key] = grads_and_vars
            metrics[f"{key}_loss"] = task_loss
            metrics[f"{key}_total_loss"] = total_loss
            # A NaN input can leave the loss finite (CPU softmax kernels) while the
            # gradients are NaN: the finiteness latch watches both.
            metrics[f"{key}_grad_norm"] = tf.linalg.global_norm([g for g, _ in grads_and_vars])
        if self.encoder_policy is not None:
            updates["clf"], updates["seg"], policy_metrics = self.encoder_policy(
                updates["clf"], updates["seg"])
            metrics.update(policy_metrics)
        # Both gradients exist before either update is applied: simultaneous updates.
        for key, agent in (("clf", self.clf_agent), ("seg", self.seg_agent)):
            if agent is not None:
                agent.optimizer.apply_gradients(updates[key], skip_gradients_aggregation=True)
        return metrics
