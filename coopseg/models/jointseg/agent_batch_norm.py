"""Per-agent BatchNorm statistics in JointSeg's shared encoder (``model.per_agent_batch_norm``).

The agents train encoder M on different sets (graded photos vs. lesion masks), and one
set of BN moving statistics updated by both describes neither at evaluation. So the
classifier runs M through a view (``encoder_view_with_own_statistics``): M's own layers
and γ/β, each BatchNormalization an ``AgentBatchNormalization`` with its own statistics.
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

# Appended to a shared BN layer's name for the classifier agent's copy of its statistics.
CLF_STATS_SUFFIX = "_clf_stats"


class AgentBatchNormalization(tf.keras.layers.Layer):
    """BatchNormalization with ``shared``'s γ, β, epsilon and momentum, but its own moving
    mean/variance.

    Same maths as the encoder's (fused) Keras BatchNormalization: ``training=True``
    normalises with the batch moments over every axis but the channel axis and moves
    this layer's statistics by ``momentum`` towards the batch mean and the
    Bessel-corrected batch variance (what Keras' fused kernel averages in TF 2.15,
    measured); ``training=False`` normalises with this layer's statistics. The
    moments and the normalisation run in float32 and the result is cast back to the input
    dtype, so a float16/bfloat16 compute policy works as with Keras BN.

    Weights, in Keras BN's order: ``[gamma, beta, moving_mean, moving_variance]``, γ/β
    being ``shared``'s variables (trainable here too, so a model through this layer
    trains them) and the statistics this layer's own.
    """

    def __init__(self, shared: tf.keras.layers.BatchNormalization,
                 name: Optional[str] = None, **kwargs):
        if not shared.built:
            raise ValueError(f"BatchNormalization {shared.name!r} must be built (its γ/β "
                             "must exist) before another layer can share them")
        unsupported = [flag for flag in ("renorm", "synchronized", "virtual_batch_size",
                                         "adjustment")
                       if getattr(shared, flag, None)]
        if unsupported:
            raise ValueError(f"AgentBatchNormalization cannot mirror {shared.name!r}: "
                             f"{unsupported} are not supported")
        kwargs.setdefault("dtype", shared.dtype_policy)
        super().__init__(name=name or shared.name + CLF_STATS_SUFFIX, **kwargs)
        # Assigning the variables tracks them as this layer's weights: a model through
        # this layer lists γ/β among its trainable variables and checkpoints them (the
        # same objects as the shared layer's, so they are saved once).
        self.gamma = shared.gamma
        self.beta = shared.beta
        self.axis = list(shared.axis)
        self.momentum = float(shared.momentum)
        self.epsilon = float(shared.epsilon)
        self.shared_layer_name = shared.name
        self._stat_shape = tuple(shared.moving_mean.shape)
        self._stat_dtype = shared.moving_mean.dtype
        self.moving_mean: Optional[tf.Variable] = None
        self.moving_variance: Optional[tf.Variable] = None

    def build(self, input_shape) -> None:
        rank = len(input_shape)
        if self.axis != [rank - 1]:
            # Channels-last only: the [C] statistics then broadcast without reshapes.
            raise ValueError(f"{self.name}: only the last axis is supported, got "
                             f"axis={self.axis} for rank {rank}")
        # As Keras BN creates its statistics: ON_READ + MEAN, so under a tf.distribute
        # strategy each replica updates its own copy and a read averages them.
        stat = dict(shape=self._stat_shape, dtype=self._stat_dtype, trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.MEAN, experimental_autocast=False)
        self.moving_mean = self.add_weight(name="moving_mean", initializer="zeros", **stat)
        self.moving_variance = self.add_weight(name="moving_variance", initializer="ones",
                                               **stat)
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
        if training is None:  # as Keras BN: the global learning phase (0 = inference)
            training = tf.keras.backend.learning_phase()
        if isinstance(training, int):
            training = bool(training)
        x = tf.cast(inputs, tf.float32)
        axes = list(range(len(inputs.shape) - 1))

        def batch_moments():
            return tf.nn.moments(x, axes)

        def moving_statistics():
            return (tf.cast(self.moving_mean, tf.float32),
                    tf.cast(self.moving_variance, tf.float32))

        smart_cond = tf.__internal__.smart_cond.smart_cond
        mean, variance = smart_cond(training, batch_moments, moving_statistics)
        static = training if isinstance(training, bool) else tf.get_static_value(training)
        if static is None or bool(static):  # training, or decided at run time
            # decay 0 in inference mode: the update is then a no-op.
            decay = smart_cond(training, lambda: tf.constant(1.0 - self.momentum),
                               lambda: tf.constant(0.0))
            count = tf.cast(tf.size(x) // tf.shape(x)[-1], tf.float32)  # values per channel
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            for var, value in ((self.moving_mean, mean), (self.moving_variance, unbiased)):
                # Bind the loop values now: add_update may run the callable later.
                self.add_update(lambda var=var, value=value: var.assign_sub(
                    (var - tf.cast(value, var.dtype)) * tf.cast(decay, var.dtype)))
        gamma = None if self.gamma is None else tf.cast(self.gamma, tf.float32)
        beta = None if self.beta is None else tf.cast(self.beta, tf.float32)
        out = tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)
        return tf.cast(out, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        """Enough to describe the layer (Keras' SavedModel metadata, ``model.to_json``).
        It cannot be rebuilt from it alone: the shared layer is a live object; rebuild
        the view with ``encoder_view_with_own_statistics`` instead."""
        config = super().get_config()
        config.update(shared_layer=self.shared_layer_name, axis=list(self.axis),
                      momentum=self.momentum, epsilon=self.epsilon)
        return config

    @classmethod
    def from_config(cls, config: dict):
        raise TypeError(
            f"AgentBatchNormalization shares the γ/β of layer {config.get('shared_layer')!r} "
            "and cannot be rebuilt from a config; rebuild the model (build_jointseg) and "
            "restore its checkpoint")


def encoder_view_with_own_statistics(encoder: tf.keras.Model,
                                     name: Optional[str] = None) -> tf.keras.Model:
    """``encoder`` with the same layers (shared weights), except that every
    BatchNormalization is an ``AgentBatchNormalization`` with its own moving statistics.

    The view's trainable variables are ``encoder``'s, in the same order; its only new
    variables are one moving mean/variance pair per BN layer. Named
    ``<encoder name>_clf_stats`` unless ``name`` is given.
    """

    def reuse_or_replace(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            return AgentBatchNormalization(layer)
        if isinstance(layer, tf.keras.Model):
            # A nested model's BN layers would be shared with their statistics.
            raise ValueError(f"encoder_view_with_own_statistics: nested model "
                             f"{layer.name!r} is not supported")
        return layer  # the very same layer object: its weights are shared

    cloned = tf.keras.models.clone_model(encoder, clone_function=reuse_or_replace)
    # clone_model keeps the encoder's name; a model that holds both needs distinct names.
    return tf.keras.Model(cloned.inputs, cloned.outputs,
                          name=name or encoder.name + CLF_STATS_SUFFIX)
