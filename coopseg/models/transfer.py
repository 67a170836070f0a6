"""Two-step initialisation: copy an encoder's weights from one model into another by layer name.

Tables I/II of the paper differ only in how the segmentation baselines start: from
random init, or from an encoder "trained on eyepacs classification set". The hand-over
is by layer name and checked, or nothing is copied (``transfer_encoder_weights``).
"""
from __future__ import annotations

from typing import Dict, Iterator, List

import tensorflow as tf
from absl import logging

from coopseg.models.jointseg.agent_batch_norm import CLF_STATS_SUFFIX


class WeightTransferError(ValueError):
    """The source and target models do not match under the requested prefix."""


def iter_leaf_layers(model: tf.keras.Model) -> Iterator[tf.keras.layers.Layer]:
    """All layers of ``model``, descending into nested models (e.g. a shared encoder)."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            yield from iter_leaf_layers(layer)
        else:
            yield layer


def _layers_by_name(model: tf.keras.Model, prefix: str) -> Dict[str, tf.keras.layers.Layer]:
    found: Dict[str, tf.keras.layers.Layer] = {}
    for layer in iter_leaf_layers(model):
        if not layer.name.startswith(prefix) or not layer.weights:
            continue
        if layer.name in found and found[layer.name] is not layer:
            raise WeightTransferError(
                f"model {model.name!r} has two different layers named {layer.name!r}; "
                "a by-name transfer would be ambiguous")
        found[layer.name] = layer
    return found


def transfer_encoder_weights(source: tf.keras.Model, target: tf.keras.Model, prefix: str) -> int:
    """Copy the weights of every ``source`` layer whose name starts with ``prefix`` into
    the ``target`` layer of the same name. Returns the number of tensors copied.

    Typical prefixes: ``"block"`` (VGG-16 classifier -> FCN-8s), ``"encoder_"``
    (JointSeg classifier/encoder -> Inception-UNet).

    All pairs are checked before anything is written: a source layer without a target
    counterpart, with a different number of weights, or with a shape mismatch raises
    WeightTransferError naming every such layer. Target-only layers (the new head) are
    left as they are. BatchNorm moving statistics are weights and move too.

    A classifier trained with per-agent BatchNorm statistics (``model.per_agent_batch_norm``)
    normalises its encoder through ``<bn>_clf_stats`` layers. When the target has no such
    layer, ``<bn>_clf_stats`` is copied into the target's ``<bn>``: its γ/β are the
    encoder's own and its moving statistics are the ones the trained classifier used.
    """
    source_layers = _layers_by_name(source, prefix)
    target_layers = _layers_by_name(target, prefix)
    source_layers = _classifier_statistics_as_encoder(source_layers, target_layers)
    if not source_layers:
        raise WeightTransferError(
            f"source model {source.name!r} has no layer with weights whose name starts "
            f"with {prefix!r}; nothing to transfer")
    target_layers = _layers_by_name(target, prefix)

    problems: List[str] = []
    for name, src in source_layers.items():
        dst = target_layers.get(name)
        if dst is None:
            problems.append(f"{name}: no layer of that name in target {target.name!r}")
            continue
        src_shapes = [tuple(w.shape) for w in src.weights]
        dst_shapes = [tuple(w.shape) for w in dst.weights]
        if src_shapes != dst_shapes:
            problems.append(f"{name}: source weight shapes {src_shapes} != target {dst_shapes}")
    if problems:
        raise WeightTransferError(
            f"cannot transfer {prefix!r} weights from {source.name!r} to {target.name!r} "
            f"({len(problems)} of {len(source_layers)} layers do not match):\n  "
            + "\n  ".join(problems))

    copied = 0
    for name, src in source_layers.items():
        for src_weight, dst_weight in zip(src.weights, target_layers[name].weights):
            dst_weight.assign(src_weight)
            copied += 1
    logging.info("Transferred %d tensors of %d %r layers from %s to %s", copied,
                 len(source_layers), prefix, source.name, target.name)
    return copied


def _classifier_statistics_as_encoder(
        source_layers: Dict[str, tf.keras.layers.Layer],
        target_layers: Dict[str, tf.keras.layers.Layer]) -> Dict[str, tf.keras.layers.Layer]:
    """Source layers renamed ``<bn>_clf_stats`` -> ``<bn>`` where only the latter is in the
    target (γ, β, moving mean, moving variance: the same weights in the same order)."""
    renamed = {}
    for name, layer in source_layers.items():
        base = name[:-len(CLF_STATS_SUFFIX)] if name.endswith(CLF_STATS_SUFFIX) else None
        if base is not None and name not in target_layers and base in target_layers:
            if base in source_layers:
                raise WeightTransferError(f"source has both {name!r} and {base!r}; cannot "
                                          f"tell which statistics {base!r} should get")
            renamed[base] = layer
        else:
            renamed[name] = layer
    return renamed
