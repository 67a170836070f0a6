"""DecoupledNet's bridging layers: class-specific saliency at pool5, combined with pool5.

Hong et al. 2015 (arXiv:1506.04924), Sec. 2.1 ("Bridging Layers"): the segmentation
network sees one class at a time through g_l = phi(f_spat ⊕ f_cls^l), where f_spat is
the classifier's pool5 (spatial, class-agnostic), f_cls^l the class-specific saliency
(``class_saliency``) and phi ``bridging_layers``.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import tensorflow as tf

from coopseg.config import ConfigError

layers = tf.keras.layers

# Names ``build_decouplednet_classifier`` gives the layers the bridge reads.
POOL_LAYER_NAMES: Tuple[str, ...] = tuple(f"block{i}_pool" for i in range(1, 6))
FC_LAYER_NAMES: Tuple[str, str, str] = ("fc6", "fc7", "fc8")  # pre-activation Dense layers


def class_saliency(class_logits: tf.Tensor, class_index: tf.Tensor, fc6_preact: tf.Tensor,
                   fc7_preact: tf.Tensor, fc_kernels: Sequence[tf.Tensor],
                   pool5_shape: Sequence[int]) -> tf.Tensor:
    """f_cls^l: the sigmoid score of class l back-propagated from fc8 to pool5.

    The classifier's head is p = flatten(pool5), z6 = p W6 + b6, h6 = relu(z6),
    z7 = h6 W7 + b7, h7 = relu(z7), logits = h7 W8 + b8, s = sigmoid(logits)
    (dropout is inactive: the classifier is frozen, called with training=False).
    The signal injected at the logits is s ⊙ e_l (paper: the score vector masked by
    the one-hot of class l), and

        f_cls^l = reshape(((((s ⊙ e_l) W8ᵀ) ⊙ [z7 > 0]) W7ᵀ ⊙ [z6 > 0]) W6ᵀ, pool5)

    which is exactly ``d/d pool5 of sum(stop_gradient(s ⊙ e_l) * logits)``, the
    analytic gradient with the score held fixed as the back-propagated signal
    (not d s_l / d pool5: the sigmoid's derivative is not applied). The masks are
    ``z > 0``, as TF's ReLU gradient, so the result equals tf.GradientTape's.

    The back-propagation is written out (three matmuls and two masks) rather than taken
    with a nested tf.GradientTape: it is identical in eager, tf.function and SavedModel
    export and needs no second-order tape while the segmenter trains.

    Args:
      class_logits: [B, L] fc8 output. class_index: int [B], the class l per example.
      fc6_preact, fc7_preact: [B, F] z6 and z7 of the same forward pass.
      fc_kernels: (W6 [P, F], W7 [F, F], W8 [F, L]) Keras Dense kernels (in x out).
      pool5_shape: static (h, w, c) of pool5, with h * w * c == P.
    Returns:
      [B, h, w, c] class-specific saliency map.
    """
    # One dtype throughout (the logits'): under mixed precision the kernels read as
    # float16 inside a layer while fc8's logits are float32.
    dtype = class_logits.dtype
    w6, w7, w8 = (tf.cast(w, dtype) for w in fc_kernels)
    signal = tf.sigmoid(class_logits) * tf.one_hot(class_index, tf.shape(class_logits)[-1],
                                                   dtype=dtype)
    grad_h7 = tf.matmul(signal, w8, transpose_b=True)
    grad_h6 = tf.matmul(grad_h7 * tf.cast(fc7_preact > 0, dtype), w7, transpose_b=True)
    grad_p = tf.matmul(grad_h6 * tf.cast(fc6_preact > 0, dtype), w6, transpose_b=True)
    return tf.reshape(grad_p, [-1, *pool5_shape])


class FrozenClassifierFeatures(layers.Layer):
    """The frozen classification network as the segmenter sees it (stage 2 of training).

    ``call([images, class_index])`` runs the classifier with ``training=False`` and
    returns a dict: ``pool5`` (f_spat), ``switches`` (the five pools' argmax, pool1
    first, for unpooling), ``class_saliency`` (f_cls^l) and ``class_logits``.

    The layer is constructed non-trainable, so a model containing it lists none of
    the classifier's weights in ``trainable_weights`` (they stay in
    ``non_trainable_weights``, so checkpoints and SavedModels still hold them). Only
    this wrapper's flag is set: the classifier passed in keeps its own trainable
    state, so stage 1 can go on training it. Outputs are ``stop_gradient``-ed: paper
    Sec. 2.2 freezes the classification network while bridging + segmentation learn.
    """

    def __init__(self, classifier: tf.keras.Model, **kwargs):
        super().__init__(trainable=False, **kwargs)
        missing = [name for name in POOL_LAYER_NAMES + FC_LAYER_NAMES
                   if name not in {layer.name for layer in classifier.layers}]
        if missing:
            raise ConfigError(f"classifier {classifier.name!r} has no layers {missing}; build it "
                              "with build_decouplednet_classifier")
        self.classifier = classifier
        pools = [classifier.get_layer(name).output for name in POOL_LAYER_NAMES]
        self._fc_layers = [classifier.get_layer(name) for name in FC_LAYER_NAMES]
        # A second functional view over the same layers (shared variables) exposing
        # the intermediate tensors the bridge needs.
        self._features = tf.keras.Model(
            classifier.inputs,
            {"pools": [p[0] for p in pools], "switches": [p[1] for p in pools],
             "fc6": self._fc_layers[0].output, "fc7": self._fc_layers[1].output,
             "logits": self._fc_layers[2].output},
            name=f"{classifier.name}_features")
        self._pool5_shape = tuple(pools[-1][0].shape[1:])

    def call(self, inputs: Sequence[tf.Tensor]) -> Dict[str, tf.Tensor]:
        images, class_index = inputs
        class_index = tf.cast(class_index, tf.int32)
        num_classes = self._fc_layers[2].units
        # tf.one_hot would silently give an all-zero saliency for a bad index.
        checks = [tf.debugging.assert_non_negative(class_index, message="class_index < 0"),
                  tf.debugging.assert_less(class_index, num_classes,
                                           message=f"class_index >= num_classes={num_classes}")]
        with tf.control_dependencies(checks):
            feats = self._features(images, training=False)
        saliency = class_saliency(feats["logits"], class_index, feats["fc6"], feats["fc7"],
                                  [layer.kernel for layer in self._fc_layers], self._pool5_shape)
        return {"pool5": tf.stop_gradient(feats["pools"][-1]),
                "switches": feats["switches"],
                "class_saliency": tf.stop_gradient(saliency),
                "class_logits": tf.stop_gradient(feats["logits"])}


def bridging_layers(f_spat: tf.Tensor, f_cls: tf.Tensor, filters: int, *,
                    name: str = "bridge") -> tf.Tensor:
    """g_l = relu(BN(1x1 conv(f_spat ⊕ BN(f_cls^l)))) with ``filters`` channels at pool5 size.

    f_cls is batch-normalised before the concatenation because
    back-propagated saliency and pool5 activations live on unrelated scales. The paper's
    fully connected combination is applied per pool5 position (a 1x1 conv): a dense
    layer on the flattened 7x7x1024 map would need 1.3 G weights.
    """
    f_cls = layers.BatchNormalization(name=f"{name}_cls_bn")(f_cls)
    x = layers.Concatenate(name=f"{name}_concat")([f_spat, f_cls])
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer="he_normal",
                      name=f"{name}_fc")(x)
    x = layers.BatchNormalization(name=f"{name}_fc_bn")(x)
    return layers.Activation("relu", name=f"{name}_fc_relu")(x)
