"""DecoupledNet's classification and segmentation networks, inference and losses.

"Decoupled Deep Neural Network for Semi-supervised Semantic Segmentation" (Hong, Noh &
Han 2015, arXiv:1506.04924): a VGG-16 multi-label classifier, bridging layers
(``bridging.py``) and a deconvolution network that segments one identified class at a time.
"""
from __future__ import annotations

import functools
from typing import Dict, Sequence, Tuple, Union

import tensorflow as tf

from coopseg.config import IGNORE_LABEL, ExperimentConfig, check_decoupled_shape
from coopseg.models.backbone_weights import input_adapter_kind
from coopseg.models.decouplednet.bridging import FrozenClassifierFeatures, bridging_layers
from coopseg.models.decouplednet.unpooling import MaxPoolWithArgmax, MaxUnpooling2D
from coopseg.models.layers.input_adapter import adapt_input

layers = tf.keras.layers

VGG16_BLOCK_CONVS: Tuple[int, ...] = (2, 2, 3, 3, 3)


def check_buildable(config: ExperimentConfig) -> None:
    """What a DecoupledNet / DeconvNet builder needs of ``ExperimentConfig.validate``: the
    data's classes and the network's shape (not all of it: that also checks files)."""
    config.data.validate()
    check_decoupled_shape(config)


# ----------------------------------------------------------------------------- layers
def _conv_bn_relu(x: tf.Tensor, filters: int, name: str, *, batch_norm: bool,
                  transpose: bool = False) -> tf.Tensor:
    """3x3 (de)convolution, stride 1, 'same' -> optional BN -> ReLU."""
    conv = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = conv(filters, 3, padding="same", use_bias=not batch_norm,
             kernel_initializer="he_normal", name=name)(x)
    if batch_norm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def deconvolution_network(g: tf.Tensor, switches: Sequence[tf.Tensor],
                          widths: Sequence[int]) -> tf.Tensor:
    """DeconvNet's mirror of VGG-16: g_l -> [B, H, W, 2] background/foreground logits.

    ``widths`` are the five VGG-16 block widths (``DecoupledConfig.vgg_widths()``).
    ``fc6_deconv`` maps g_l to pool5's width (unpooling needs the switches' channel
    count); then per block 5..1: unpool with that block's switches, and its 3x3
    deconvolutions at the block's width, the last one narrowing to the width of the
    block above (512-512-512 | 512-512-256 | 256-256-128 | 128-64 | 64-64).
    """
    # BN after every deconvolution: DeconvNet has it, and training from scratch needs it.
    x = _conv_bn_relu(g, widths[4], "fc6_deconv", batch_norm=True, transpose=True)
    for block in range(5, 0, -1):
        x = MaxUnpooling2D(name=f"unpool{block}")([x, switches[block - 1]])
        convs = VGG16_BLOCK_CONVS[block - 1]
        for i in range(1, convs + 1):
            last = i == convs and block > 1
            x = _conv_bn_relu(x, widths[block - 2] if last else widths[block - 1],
                              f"deconv{block}_{i}", batch_norm=True, transpose=True)
    return layers.Conv2D(2, 1, dtype="float32", name="seg_score")(x)  # float32 logits


# ----------------------------------------------------------------------------- models
def build_decouplednet_classifier(config: ExperimentConfig) -> tf.keras.Model:
    """VGG-16 classification network: standardised image [B, S, S, 3] -> logits [B, L].

    S is ``model.input_size``, L = ``len(data.class_names) - 1`` (background is no
    image-level class), widths and fc6/fc7 units from ``config.decoupled``. Pools are
    ``MaxPoolWithArgmax`` (``block{k}_pool``) so the segmenter can reuse their switches;
    fc6 is a Dense layer on the flattened pool5 (the bridge back-propagates through
    fc8 -> fc7 -> fc6). fc6/fc7/fc8 are pre-activation Dense layers followed by
    ``fc6_relu`` etc. Scores are ``sigmoid(logits)``: multi-label.

    Deviation: the paper starts from ImageNet VGG-16; nothing is downloaded here, so by
    default the classifier trains from scratch with BatchNorm after every conv
    (``model.vgg_batch_norm``). With Keras' VGG-16 file on disk
    (``train.backbone_weights``) it is the published conv + bias net
    (``vgg_batch_norm=False``) behind the "caffe" input adapter (``input_adapter.py``).
    """
    check_buildable(config)
    dc, size = config.decoupled, config.model.input_size
    image = layers.Input((size, size, 3), name="image")
    x = adapt_input(image, input_adapter_kind(config))
    for block, (convs, width) in enumerate(zip(VGG16_BLOCK_CONVS, dc.vgg_widths()), start=1):
        for i in range(1, convs + 1):
            x = _conv_bn_relu(x, width, f"block{block}_conv{i}",
                              batch_norm=config.model.vgg_batch_norm)
        x, _ = MaxPoolWithArgmax(name=f"block{block}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = layers.Dense(dc.fc_units, name=name)(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.Dropout(dc.dropout, name=f"{name}_dropout")(x)
    # float32 logits also under a mixed-precision policy (numerically safe losses).
    logits = layers.Dense(len(config.data.class_names) - 1, dtype="float32", name="fc8")(x)
    return tf.keras.Model(image, logits, name="decouplednet_classifier")


def build_decouplednet_segmenter(config: ExperimentConfig,
                                 classifier: tf.keras.Model) -> tf.keras.Model:
    """Bridging + deconvolution network on top of a frozen ``classifier``.

    Inputs: ``image`` [B, S, S, 3] and ``class_index`` int32 [B] (the class l to
    segment in each image; 0-based, background excluded). Output: [B, S, S, 2]
    background/foreground logits for that class. ``trainable_weights`` holds only
    the bridging and deconvolution layers; the classifier runs with training=False
    (frozen BN statistics, no dropout) and its weights are non-trainable here.

    Training is decoupled (paper Sec. 2.2), as ``decouplednet_system`` wires it::

        classifier = build_decouplednet_classifier(config)           # stage 1
        loss = multilabel_classification_loss(labels, classifier(x, training=True))
        # ... minimise over classifier.trainable_weights on image-level labels.
        segmenter = build_decouplednet_segmenter(config, classifier)  # stage 2
        logits = segmenter([x, class_index], training=True)          # one (image, class) pair
        loss = foreground_segmentation_loss(class_targets(label_map, class_index), logits)
        # ... minimise over segmenter.trainable_weights (bridge + deconv only).
        model = DecoupledNetInference(classifier, segmenter, 0.5)    # predict / export
    """
    check_buildable(config)
    size = config.model.input_size
    image = layers.Input((size, size, 3), name="image")
    class_index = layers.Input((), dtype=tf.int32, name="class_index")
    feats = FrozenClassifierFeatures(classifier, name="frozen_classifier")([image, class_index])
    g = bridging_layers(feats["pool5"], feats["class_saliency"], config.decoupled.bridge_filters)
    logits = deconvolution_network(g, feats["switches"], config.decoupled.vgg_widths())
    return tf.keras.Model([image, class_index], logits, name="decouplednet_segmenter")


# ----------------------------------------------------------------------------- inference
def combine_class_masks(scores: tf.Tensor, fg_probs: tf.Tensor,
                        threshold: Union[float, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Per-class masks -> one label map (paper Sec. 2.1: argmax over the classes' masks).

    Args:
      scores: [B, L] sigmoid class scores. fg_probs: [B, L, H, W] foreground
        probability of each class's 2-channel mask. threshold: classes with
        score >= threshold are "identified"; the others are ignored.
    Returns:
      ``class_probs`` [B, L+1, H, W]: channel 0 is the background probability of the
      winning class (1 - its foreground probability; 1 where no class is
      identified), channel l+1 the foreground probability of class l (0 when not
      identified). ``class_map`` int32 [B, H, W]: l+1 where the identified class l
      with the highest foreground probability beats its own background, else 0.
    """
    identified = tf.cast(scores >= threshold, fg_probs.dtype)[:, :, None, None]
    fg = fg_probs * identified
    best_fg = tf.reduce_max(fg, axis=1)
    best_class = tf.argmax(fg, axis=1, output_type=tf.int32) + 1
    background = 1.0 - best_fg
    class_map = tf.where(best_fg > background, best_class, tf.zeros_like(best_class))
    return {"class_probs": tf.concat([background[:, None], fg], axis=1), "class_map": class_map}


class DecoupledNetInference(tf.Module):
    """Classifier + segmenter as one exportable ``predict(images)`` (tf.saved_model.save).

    Image size and class count L come from ``classifier``; a class is segmented when its
    sigmoid score is at least ``score_threshold`` (``decoupled.score_threshold``).

    ``predict`` returns ``class_scores`` [B, L], ``class_probs`` [B, L+1, H, W] and
    ``class_map`` int32 [B, H, W] (see ``combine_class_masks``). It runs the segmenter
    for every (image, class) pair at once, the images repeated L times, and masks
    out classes below the threshold afterwards: no data-dependent control flow, so
    it traces, exports and batches well, at the cost of L segmenter passes (and L
    classifier passes inside them) per image even when few classes are present.
    """

    def __init__(self, classifier: tf.keras.Model, segmenter: tf.keras.Model,
                 score_threshold: float):
        super().__init__(name="decouplednet_inference")
        # The module tracks the models' variables, not the Keras models: saving then
        # traces ``predict`` alone instead of Keras' per-layer serialisation of both
        # models, which a server never uses and which made export several times slower.
        unique = {id(v): v for v in classifier.weights + segmenter.weights}
        self.model_variables = list(unique.values())
        size, num_classes = classifier.input_shape[1], classifier.output_shape[-1]
        spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="images")
        self.predict = tf.function(
            functools.partial(_predict_all_classes, classifier, segmenter, num_classes,
                              float(score_threshold)),
            input_signature=[spec])


def _foreground_all_classes(segmenter: tf.keras.Model, num_classes: int,
                            images: tf.Tensor) -> tf.Tensor:
    """[B, L, H, W] foreground probability of every class l for every image."""
    batch, size = tf.shape(images)[0], tf.shape(images)[1:3]
    # Pair order is image-major, so reshaping [B * L, ...] -> [B, L, ...] is exact.
    pair_images = tf.repeat(images, num_classes, axis=0)
    pair_classes = tf.tile(tf.range(num_classes, dtype=tf.int32), [batch])
    fg = tf.nn.softmax(segmenter([pair_images, pair_classes], training=False), axis=-1)[..., 1]
    return tf.reshape(fg, tf.concat([[batch, num_classes], size], axis=0))


def _predict_all_classes(classifier: tf.keras.Model, segmenter: tf.keras.Model,
                         num_classes: int, threshold: float,
                         images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The body of ``DecoupledNetInference.predict``: all L classes of every image at once."""
    scores = tf.sigmoid(classifier(images, training=False))
    fg = _foreground_all_classes(segmenter, num_classes, images)
    return {"class_scores": scores, **combine_class_masks(scores, fg, threshold)}


def class_presence(label_map: tf.Tensor, num_classes: int) -> tf.Tensor:
    """[B, L] float: 1 where foreground class l (index l+1) occurs in the label map
    (IGNORE_LABEL and background count for nothing)."""
    label_map = tf.cast(label_map, tf.int32)
    flat = tf.reshape(label_map, [tf.shape(label_map)[0], -1])
    classes = tf.range(1, num_classes + 1, dtype=tf.int32)
    return tf.cast(tf.reduce_any(tf.equal(flat[:, :, None], classes), axis=1), tf.float32)


def predict_with_true_classes(segmenter: tf.keras.Model, num_classes: int, images: tf.Tensor,
                              label_map: tf.Tensor) -> tf.Tensor:
    """int32 [B, H, W] class map when the classes present in ``label_map`` are the ones
    "identified" instead of those the classifier scores above the threshold.

    A diagnostic, not the paper's inference: it separates what stage 2 can segment from
    what stage 1 names (Table 1 reports it beside the real mIoU).
    """
    fg = _foreground_all_classes(segmenter, num_classes, images)
    return combine_class_masks(class_presence(label_map, num_classes), fg, 0.5)["class_map"]


# ----------------------------------------------------------------------------- losses
def multilabel_classification_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Stage 1: mean sigmoid cross-entropy of multi-hot image labels [B, L] (e_c, Sec. 2.1)."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels, logits.dtype), logits=logits))


def class_targets(label_map: tf.Tensor, class_index: tf.Tensor) -> tf.Tensor:
    """Binary mask z^l of class l from a class-index map (0 = background, l+1 = class l).

    ``IGNORE_LABEL`` pixels stay ignored. label_map [B, H, W], class_index [B].
    """
    label_map = tf.cast(label_map, tf.int32)
    fg = tf.cast(tf.equal(label_map, tf.cast(class_index, tf.int32)[:, None, None] + 1), tf.int32)
    return tf.where(tf.equal(label_map, IGNORE_LABEL), IGNORE_LABEL, fg)


def foreground_segmentation_loss(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Stage 2: softmax cross-entropy of 2-channel logits vs z^l, ignoring IGNORE_LABEL (e_s)."""
    targets = tf.cast(targets, tf.int32)
    valid = tf.not_equal(targets, IGNORE_LABEL)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.where(valid, targets, 0), logits=logits)
    weights = tf.cast(valid, losses.dtype)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)
