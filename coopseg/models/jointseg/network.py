"""JointSeg: shared encoder M, classifier agent C and segmentation agent S (paper Fig. 5).

    y_common = M(x);  y_clf = C(M(x));  y_seg = S(M(x), encoder skips)      (Eq. 1)

``build_jointseg`` also wires them into two end-to-end models (classifier and
segmenter) that share the encoder's layers, for evaluation and export.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import tensorflow as tf

from coopseg.config import ModelConfig
from coopseg.config.methods import JOINTSEG
from coopseg.models.jointseg.agent_batch_norm import encoder_view_with_own_statistics
from coopseg.models.jointseg.attention import partial_attention_gate
from coopseg.models.jointseg.blocks import (conv_bn, factorized_residual_inception_block,
                                            residual_inception_block, upsample_conv_bn)

layers = tf.keras.layers


def _bn_kw(config: ModelConfig) -> dict:
    return dict(bn_momentum=config.bn_momentum, bn_epsilon=config.bn_epsilon,
                bn_sync=config.sync_batch_norm)


def encoder_output_shapes(config: ModelConfig) -> List[tuple]:
    """(H, W, C) of the encoder outputs: deep features, then skip_0 .. skip_{L-1}."""
    size = config.input_size
    deep = size // 2 ** (config.num_levels + 1)
    shapes = [(deep, deep, config.encoder_filters[-1])]
    for level, filters in enumerate(config.encoder_filters):
        s = size // 2 ** (level + 1)
        shapes.append((s, s, filters))
    return shapes


def build_encoder(config: ModelConfig) -> tf.keras.Model:
    """Shared encoder M (θ1): stem, then per level cascaded residual inception blocks
    and a stride-2 conv down (the paper's "strided convolution ... to down-sample").

    Outputs ``[deep, skip_0, ..., skip_{L-1}]``: ``deep`` (input / 2**(L+1)) feeds both
    agents; ``skip_j`` is the last map of level j before downsampling (E_j of Fig. 4).
    """
    config.validate()
    kw = _bn_kw(config)
    image = layers.Input((config.input_size, config.input_size, 3), name="image")
    x = conv_bn(image, config.stem_filters, 3, strides=2, name="encoder_stem", **kw)
    skips = []
    for level, (filters, blocks) in enumerate(zip(config.encoder_filters, config.encoder_blocks)):
        for b in range(blocks):
            x = residual_inception_block(x, filters, name=f"encoder_l{level}_b{b}",
                                         use_5x5=config.use_5x5, **kw)
        skips.append(x)
        x = conv_bn(x, filters, 3, strides=2, name=f"encoder_l{level}_down", **kw)
    return tf.keras.Model(image, [x] + skips, name="encoder")


def build_classifier(config: ModelConfig) -> tf.keras.Model:
    """Classifier agent C (θ2): factorised residual inception blocks (Fig. 3) on M's
    output, global average pool, dense -> ``num_grades`` logits."""
    kw = _bn_kw(config)
    deep_shape = encoder_output_shapes(config)[0]
    deep = layers.Input(deep_shape, name="encoder_features")
    x = deep
    for b in range(config.classifier_blocks):
        x = factorized_residual_inception_block(x, config.classifier_filters,
                                                name=f"classifier_b{b}", **kw)
    x = layers.GlobalAveragePooling2D(name="classifier_gap")(x)
    if config.classifier_dropout:
        x = layers.Dropout(config.classifier_dropout, name="classifier_dropout")(x)
    # float32 logits so a mixed-precision policy never feeds float16 into the softmax.
    logits = layers.Dense(config.num_grades, name="classifier_logits", dtype="float32")(x)
    return tf.keras.Model(deep, logits, name="classifier")


def build_decoder(config: ModelConfig) -> tf.keras.Model:
    """Segmentation agent S (θ3): per level up a 2x2/stride-2 transposed conv, the
    partial attention gate over encoder maps, a conv block; a final 1x1 conv gives
    ``num_seg_classes`` logits at input resolution."""
    kw = _bn_kw(config)
    shapes = encoder_output_shapes(config)
    deep = layers.Input(shapes[0], name="encoder_features")
    skips = [layers.Input(s, name=f"encoder_skip_{j}") for j, s in enumerate(shapes[1:])]
    x = deep
    for i, filters in enumerate(config.resolved_decoder_filters()):
        name = f"decoder_up{i}"
        x = upsample_conv_bn(x, filters, name=name, **kw)
        x = partial_attention_gate(x, skips, mode=config.pag_mode, name=f"{name}_pag", **kw)
        if config.decoder_block == "residual_inception":
            x = residual_inception_block(x, filters, name=f"{name}_block",
                                         use_5x5=config.use_5x5, **kw)
        else:
            x = conv_bn(x, filters, 3, name=f"{name}_block", **kw)
    logits = layers.Conv2D(config.num_seg_classes, 1, name="decoder_logits", dtype="float32")(x)
    return tf.keras.Model([deep] + skips, logits, name="decoder")


@dataclass
class JointSegModels:
    """The three parameter groups and the two end-to-end views built on them."""

    encoder: tf.keras.Model
    classifier: tf.keras.Model
    decoder: tf.keras.Model
    clf_model: tf.keras.Model  # image -> grade logits  (C ∘ M)
    seg_model: tf.keras.Model  # image -> class logits  (S ∘ M)
    # image -> {grade_logits, seg_logits}: one encoder pass, two with per-agent statistics
    joint_model: tf.keras.Model
    # per_agent_batch_norm: M as the classifier agent runs it (the encoder's layers and
    # weights, its own BN moving statistics); None otherwise.
    clf_encoder_view: Optional[tf.keras.Model] = None

    @property
    def shared_variables(self) -> list:
        """θ1: the encoder's trainable variables (the view's are the same objects)."""
        return self.encoder.trainable_variables


def build_jointseg(config: ModelConfig) -> JointSegModels:
    """Build M, C and S and the end-to-end views that share them.

    M, C and S are three separate Keras functional models so that each parameter group
    (θ1, θ2, θ3 of Eq. 2) is simply ``model.trainable_variables``.

    With ``config.per_agent_batch_norm`` the classifier path (``clf_model`` and the
    grade head of ``joint_model``) runs M through ``clf_encoder_view``: the same layers
    and weights, its own BN moving statistics. ``joint_model`` then runs the encoder
    twice (once per set of statistics); the segmenter path is unchanged.
    """
    encoder = build_encoder(config)
    classifier = build_classifier(config)
    decoder = build_decoder(config)
    image = layers.Input((config.input_size, config.input_size, 3), name="image")
    feats = encoder(image)
    clf_encoder_view = None
    clf_feats = feats
    if config.per_agent_batch_norm:
        # Built after M, C and S: their layers, names and initial weights are those of
        # the shared-statistics model (the view adds only zeros/ones statistics).
        clf_encoder_view = encoder_view_with_own_statistics(encoder)
        clf_feats = clf_encoder_view(image)
    grade_logits = classifier(clf_feats[0])
    seg_logits = decoder(feats)
    clf_model = tf.keras.Model(image, grade_logits, name="jointseg_classifier")
    seg_model = tf.keras.Model(image, seg_logits, name="jointseg_segmenter")
    joint_model = tf.keras.Model(image, {"grade_logits": grade_logits, "seg_logits": seg_logits},
                                 name=JOINTSEG)
    return JointSegModels(encoder, classifier, decoder, clf_model, seg_model, joint_model,
                          clf_encoder_view)
