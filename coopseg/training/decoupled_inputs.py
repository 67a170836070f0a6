"""DecoupledNet's inputs: image-level labels (stage 1) and (image, class) pairs (stage 2).

Hong et al. 2015 (arXiv:1506.04924, Sec. 2.2) train their two networks on different
annotations: the classification network on multi-hot image-level labels over the
foreground classes, bridging + segmentation on (image, class l) pairs, each with the
binary mask z^l of its class.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from coopseg.config import ConfigError, ExperimentConfig, method_spec
from coopseg.models.decouplednet.network import class_targets
from coopseg.training.examples import check_held_out, input_seeds, mask_examples
from coopseg.training.agent_inputs import Inputs
from data_pipelines import pipeline
from data_pipelines.decode import DecodeReport, graded_source, mask_source
from data_pipelines.imageio import UnreadableImageError, read_label_map
from data_pipelines.labels import strong_subset
from data_pipelines.records import DataError, GradedExample, MaskExample

# Pairs are shuffled over this many batches' worth of pairs: enough to spread the
# pairs of one image over several batches, small enough to start training at once.
PAIR_SHUFFLE_BATCHES = 8


# ----------------------------------------------------------------- image-level labels

def labels_from_label_map(path: str, num_classes: int) -> Tuple[int, ...]:
    """Multi-hot presence of foreground classes 1..num_classes-1 in a class-index map."""
    present = np.zeros(num_classes, bool)
    values = np.unique(read_label_map(path, num_classes))
    present[values[values < num_classes]] = True
    return tuple(int(p) for p in present[1:])


def with_image_labels(examples: Sequence[MaskExample], class_names: Sequence[str], *,
                      skip_bad: bool = True, report: Optional[DecodeReport] = None,
                      num_threads: Optional[int] = None) -> List[MaskExample]:
    """``examples`` with ``image_labels`` filled in where the reader left them empty.

    Missing labels are derived from the class-index map (``label_path``); binary-mask
    readers always fill them (a class is present when its mask file exists). Labels of
    the wrong length are a DataError. An unreadable label map is dropped and recorded
    in ``report`` when ``skip_bad``, else raised.
    """
    num_classes = len(class_names)
    report = report if report is not None else DecodeReport()
    missing = [e for e in examples if not e.image_labels]
    for e in examples:
        if e.image_labels and len(e.image_labels) != num_classes - 1:
            raise DataError(f"{e.image_path}: {len(e.image_labels)} image labels for the "
                            f"{num_classes - 1} foreground classes {tuple(class_names[1:])}")
    unlabelled_without_map = [e.image_path for e in missing if not e.label_path]
    if unlabelled_without_map:
        raise DataError(f"{len(unlabelled_without_map)} example(s) have neither image labels "
                        f"nor a class-index map to derive them from, e.g. "
                        f"{unlabelled_without_map[:3]}")
    if not missing:
        return list(examples)

    def derive(example: MaskExample) -> Optional[Tuple[int, ...]]:
        try:
            return labels_from_label_map(example.label_path, num_classes)
        except UnreadableImageError as err:
            if not skip_bad:
                raise
            report.record(example.label_path, str(err))
            return None

    with ThreadPoolExecutor(max_workers=num_threads or os.cpu_count() or 1) as pool:
        derived = dict(zip((e.image_id for e in missing), pool.map(derive, missing)))
    logging.info("image-level labels derived from %d class-index map(s)", len(missing))
    out = []
    for e in examples:
        if e.image_labels:
            out.append(e)
        elif derived[e.image_id] is not None:
            out.append(dataclasses.replace(e, image_labels=derived[e.image_id]))
    return out


def image_label_source(examples: Sequence[MaskExample], *, skip_bad: bool = True,
                       report: Optional[DecodeReport] = None,
                       shuffle_seed: Optional[int] = None) -> tf.data.Dataset:
    """Dataset of ``(image uint8 [H, W, 3], labels int32 [L])``: stage 1's weak annotations.

    Built on ``graded_source`` (same decoding, skipping and whole-set shuffling) with
    each example's position as its "grade", mapped back to its multi-hot row.
    """
    examples = list(examples)
    if not examples:
        raise DataError("no images for the classification network (empty mask set)")
    table = tf.constant([e.image_labels for e in examples], tf.int32)
    indexed = [GradedExample(image_path=e.image_path, grade=i, image_id=e.image_id)
               for i, e in enumerate(examples)]
    source = graded_source(indexed, skip_bad=skip_bad, report=report, shuffle_seed=shuffle_seed)
    return source.map(tf.autograph.experimental.do_not_convert(
        lambda image, index: (image, tf.gather(table, index))))


# --------------------------------------------------------------- (image, class) pairs

def expand_class_pairs(images: tf.Tensor, masks: tf.Tensor, num_classes: int
                       ) -> Tuple[Tuple[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Every (image, class l) pair of a mask batch with l present in the mask.

    Args:
      images: [B, S, S, 3]. masks: int [B, S, S] class indices (0 = background,
        l + 1 = class l, IGNORE_LABEL = ignore). num_classes: L foreground classes.
    Returns:
      ``((pair_images [P, S, S, 3], pair_classes int32 [P]), class_masks int32 [P, S, S])``
      in image-major, class-minor order. A pair's class mask keeps l + 1 where class l
      is and IGNORE_LABEL where the mask ignores, and is 0 everywhere else: it *is* the
      binary target z^l (foreground = nonzero), and it still says which class the
      foreground is, so the trainer's per-class loss weights
      (``train.seg_class_weighting``) are estimated and applied per class, as for
      every other segmenter (``decouplednet_system.foreground_loss``).
    """
    masks = tf.cast(masks, tf.int32)
    classes = tf.range(1, num_classes + 1, dtype=tf.int32)
    present = tf.reduce_any(tf.equal(masks[:, None], classes[None, :, None, None]), axis=[2, 3])
    pairs = tf.cast(tf.where(present), tf.int32)  # [P, 2] = (image, class), row-major
    image_index, class_index = pairs[:, 0], pairs[:, 1]
    z = class_targets(tf.gather(masks, image_index), class_index)  # 1 / 0 / IGNORE_LABEL
    class_masks = tf.where(tf.equal(z, 1), (class_index + 1)[:, None, None], z)
    return (tf.gather(images, image_index), class_index), class_masks


def class_pair_batches(mask_batches: tf.data.Dataset, num_classes: int,
                       batch_size: int, seed: int) -> tf.data.Dataset:
    """Augmented (image, class-index mask) batches -> ``((images, classes), class masks)``.

    Pair expansion, our choice among the two the paper allows: every augmented mask batch
    is expanded to *all* its (image, l) pairs with l present in the augmented crop
    (``expand_class_pairs``), one pair per training example as in the paper. Pairs are
    shuffled over ``PAIR_SHUFFLE_BATCHES`` batches and re-batched with ``drop_remainder``
    (static batch size for the training step). An epoch over the strong set therefore
    visits each pair once, as the authors' list of training pairs does; a class cropped
    out of the view gives no pair (there is nothing of it to segment), and an image
    without any foreground class gives none either.
    """
    plain = tf.autograph.experimental.do_not_convert
    pairs = mask_batches.map(plain(lambda images, masks: expand_class_pairs(
        images, masks, num_classes)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    pairs = pairs.unbatch().shuffle(PAIR_SHUFFLE_BATCHES * batch_size, seed=seed,
                                    reshuffle_each_iteration=True)
    return pairs.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------- a run's inputs

def load_training_subset(config: ExperimentConfig, report: Optional[DecodeReport] = None,
                         need_labels: bool = True) -> List[MaskExample]:
    """The mask set's training examples this stage learns from (strong subset or all).

    Both stages draw their images from the mask set's training split, read as every
    method reads it (``examples.mask_examples``: ``data.masks_train_count``,
    ``data.validate_files``). ``decoupled.strong_per_class`` N > 0 then picks N images
    per class, reproducibly from ``data.seed`` (``labels.strong_subset``); 0 keeps every
    image. Stage 1 of DecoupledNet uses all images (0); stage 1 of DecoupledNet-Str,
    DeconvNet and every stage 2 use the subset. ``need_labels`` fills ``image_labels``
    (stage 1 always needs them; picking a subset does too): from
    ``MaskExample.image_labels`` when the reader knows them, else from the class-index
    map (``with_image_labels``).
    """
    return _strong_subset(config, _training_examples(config, report), report, need_labels)


def _training_examples(config: ExperimentConfig,
                       report: Optional[DecodeReport]) -> List[MaskExample]:
    d = config.data
    if d.masks_format == "tfrecord":
        raise ConfigError("DecoupledNet needs per-image records (image labels, strong "
                          "subsets): use a folder format for data.masks_train, not tfrecord")
    if not d.masks_train:
        raise ConfigError(f"method {config.method} trains on a mask set: set --masks_train")
    examples = mask_examples(config, "train", report)
    partial = [e.image_path for e in examples if e.is_partial]
    if partial:
        raise ConfigError(f"method {config.method} needs fully annotated masks (its image-level "
                          f"labels say which classes are absent); {len(partial)} images are "
                          f"partially annotated, e.g. {partial[0]!r}")
    return examples


def _strong_subset(config: ExperimentConfig, examples: List[MaskExample],
                   report: Optional[DecodeReport], need_labels: bool) -> List[MaskExample]:
    d, per_class = config.data, config.decoupled.strong_per_class
    if per_class < 0:
        raise ConfigError(f"decoupled.strong_per_class must be >= 0, got {per_class}")
    if need_labels or per_class:
        examples = with_image_labels(examples, d.class_names, skip_bad=d.skip_bad_images,
                                     report=report)
    chosen = strong_subset(examples, per_class, d.class_names, seed=d.seed)
    if chosen and all(e.image_labels for e in chosen):
        counts = np.sum([e.image_labels for e in chosen], axis=0)
        if not counts.any():
            raise DataError(f"{d.masks_train}: none of the {len(chosen)} chosen images contains "
                            f"a foreground class {tuple(d.class_names[1:])}; nothing to learn")
        per_name = ", ".join(f"{n} {c}" for n, c in zip(d.class_names[1:], counts))
        logging.info("%s: %d of %d images (strong_per_class=%s, seed %d); images per class: %s",
                     d.masks_train, len(chosen), len(examples), per_class or "all", d.seed,
                     per_name)
    return chosen


def build_decoupled_inputs(config: ExperimentConfig, start_step: int = 0,
                           report: Optional[DecodeReport] = None):
    """``Inputs`` for a DecoupledNet or DeconvNet stage (``build_inputs`` picks it
    for these methods).

    - ``clf_only`` (DecoupledNet stage 1): ``clf_train`` = (images, multi-hot labels);
      ``clf_val`` the same of ``data.masks_val`` (image-level labels from its masks).
    - ``seg_only``: ``seg_train`` = DecoupledNet's ((images, classes), class masks) pairs, or
      DeconvNet's (images, class-index masks); ``seg_val`` = (images, class-index
      masks) of ``data.masks_val`` for the shared mIoU evaluation.
    Examples, held-out check and seeds are those of every other method
    (``training/examples.py``).
    """
    d, tc, size = config.data, config.train, config.model.input_size
    report = report if report is not None else DecodeReport()
    seeds = input_seeds(config, start_step)
    inputs = Inputs()
    spec = method_spec(config.method)
    if tc.trains_classifier and tc.trains_segmenter:
        raise ConfigError(f"method {config.method} trains in stages: train.mode must be "
                          "clf_only (stage 1) or seg_only (stage 2), not joint")
    if tc.trains_classifier and not spec.has_classifier:
        raise ConfigError(f"method {config.method} has no classification network")
    training = _training_examples(config, report)
    val = mask_examples(config, "val", report) if d.masks_val else None
    if val is not None:
        check_held_out(training, val, "mask", d.allow_val_overlap)
    if tc.trains_classifier:
        source = image_label_source(_strong_subset(config, training, report, True),
                                    skip_bad=d.skip_bad_images, report=report,
                                    shuffle_seed=seeds.order)
        inputs.clf_train = pipeline.graded_pipeline(
            source, data=d, crop_size=size, batch_size=tc.clf_agent().batch_size,
            training=True, seed=seeds.augment)
        if val is not None:
            # Stage 1 is validated on the image-level labels of the mask validation set,
            # the images stage 2 is scored on.
            labelled = with_image_labels(val, d.class_names, skip_bad=d.skip_bad_images,
                                         report=report)
            inputs.clf_val = pipeline.graded_pipeline(
                image_label_source(labelled, skip_bad=d.skip_bad_images, report=report),
                data=d, crop_size=size, batch_size=tc.clf_agent().batch_size,
                training=False, seed=seeds.augment)
        return inputs
    batch = tc.seg.batch_size
    strong = _strong_subset(config, training, report, need_labels=False)
    masks = pipeline.mask_pipeline(
        mask_source(strong, d.class_names, d.mask_priority, skip_bad=d.skip_bad_images,
                    report=report, shuffle_seed=seeds.order),
        data=d, crop_size=size, batch_size=batch, training=True, seed=seeds.augment + 1)
    inputs.seg_train = (class_pair_batches(masks, len(d.class_names) - 1, batch,
                                           seeds.augment + 2)
                        if spec.class_conditional else masks)
    if val is not None:
        inputs.seg_val = pipeline.mask_pipeline(
            mask_source(val, d.class_names, d.mask_priority, skip_bad=d.skip_bad_images,
                        report=report),
            data=d, crop_size=size, batch_size=max(batch, 4), training=False,
            seed=seeds.augment)
    return inputs
