"""Stage 3: the batched input pipelines of the two agents.

    source (decode.py or tfrecords.py) -> resize -> [cache] -> [shuffle] -> [repeat]
        -> per-example seed -> augment (training) / standardise (eval) -> batch -> prefetch

Files and TFRecords plug in alike; shuffling and every augmentation draw derive from ``seed``.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from coopseg.config import ConfigError, DataConfig
from data_pipelines import augment
from data_pipelines.decode import DecodeReport, graded_source, mask_source
from data_pipelines.records import GradedExample, MaskExample


def _check_sizes(data: DataConfig, crop_size: int, batch_size: int, training: bool) -> None:
    if batch_size < 1 or crop_size < 1:
        raise ConfigError(f"batch_size={batch_size} and crop_size={crop_size} must be >= 1")
    if training and data.resize_size < crop_size:
        raise ConfigError(
            f"data.resize_size={data.resize_size} is smaller than the crop ({crop_size}); "
            "the random crop needs resize_size >= crop_size")


def _map(dataset: tf.data.Dataset, function, deterministic: bool) -> tf.data.Dataset:
    """Parallel map without AutoGraph: these functions have no tensor-dependent Python
    control flow, and converting their call tree (TFA included) took ~10 s at the first
    build here."""
    return dataset.map(tf.autograph.experimental.do_not_convert(function),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _with_seeds(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Zip a stateless-op seed of shape [2] onto each element.

    ``Dataset.random`` with ``rerandomize_each_iteration`` repeats its sequence for a
    fresh pipeline with the same seed but draws anew on each further iteration; the
    seeds are attached after ``repeat``, so its passes continue one stream. Either way
    epochs see different augmentations.
    """
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    seeds = _map(draws, lambda r: tf.stack([r, tf.constant(seed, tf.int64)]), True)
    return tf.data.Dataset.zip((dataset, seeds))


def _order_and_seed(dataset: tf.data.Dataset, *, data: DataConfig, training: bool, seed: int,
                    repeat: bool, cache_file: str) -> tf.data.Dataset:
    """Cache, shuffle, repeat and attach seeds: everything between resize and augment.

    The cache holds the resized uint8 images, before any random op: later epochs skip
    decoding and resizing but still get fresh augmentation.
    """
    if data.cache:
        dataset = dataset.cache(cache_file)
    if training:
        dataset = dataset.shuffle(max(1, data.shuffle_buffer), seed=seed,
                                  reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return _with_seeds(dataset, seed)


def _finish(dataset: tf.data.Dataset, batch_size: int, drop_remainder: bool,
            deterministic: bool) -> tf.data.Dataset:
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    options.experimental_optimization.map_parallelization = True
    return dataset.with_options(options)


def graded_pipeline(
    source: tf.data.Dataset,
    *,
    data: DataConfig,
    crop_size: int,
    batch_size: int,
    training: bool,
    seed: int,
    repeat: Optional[bool] = None,
    drop_remainder: Optional[bool] = None,
    deterministic: bool = True,
    cache_file: str = "",
) -> tf.data.Dataset:
    """Batches of ``(images float32 [B, S, S, 3], grades int32 [B])`` for the classifier.

    ``source`` is any dataset of ``(image uint8 [H, W, 3], grade int32 [])`` (image files
    through ``decode.py``, or TFRecords). Evaluation (``training=False``) resizes straight
    to ``crop_size`` instead of cropping, so the whole field of view is seen and no
    lesion at the border is cut out of the evaluation. A fresh pipeline built with the
    same ``seed`` yields the same batches; iterating the same pipeline object again
    reshuffles and redraws, as another epoch should.

    ``repeat`` and ``drop_remainder`` default to ``training``. ``cache_file`` ("" =
    memory) is used when ``data.cache``. ``deterministic=False`` lets parallel maps
    return out of order (faster, no longer reproducible).
    """
    _check_sizes(data, crop_size, batch_size, training)
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    size = data.resize_size if training else crop_size
    dataset = _map(source, lambda image, grade: (augment.resize_image(image, size), grade),
                   deterministic)
    dataset = _order_and_seed(dataset, data=data, training=training, seed=seed,
                              repeat=repeat, cache_file=cache_file)

    def prepare(example, element_seed):
        image, grade = example
        if training:
            image = augment.augment_for_classifier(
                image, element_seed, crop_size=crop_size, data=data)
        else:
            image = augment.standardize(image)
        return image, tf.cast(grade, tf.int32)

    dataset = _map(dataset, prepare, deterministic)
    return _finish(dataset, batch_size, drop_remainder, deterministic)


def mask_pipeline(
    source: tf.data.Dataset,
    *,
    data: DataConfig,
    crop_size: int,
    batch_size: int,
    training: bool,
    seed: int,
    repeat: Optional[bool] = None,
    drop_remainder: Optional[bool] = None,
    deterministic: bool = True,
    cache_file: str = "",
) -> tf.data.Dataset:
    """Batches of ``(images float32 [B, S, S, 3], masks int32 [B, S, S])`` for the segmenter.

    ``source`` is any dataset of ``(image uint8 [H, W, 3], mask uint8 [H, W])``.
    Masks keep 255 (ignore) through every transform; areas exposed by padding or the
    affine warp are background (0). Arguments as in ``graded_pipeline``.
    """
    _check_sizes(data, crop_size, batch_size, training)
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    # With a working resolution the images are held at it: training cuts patches of
    # crop_size from them, validation keeps the whole image (segmented by tiles).
    size = data.working_size or (data.resize_size if training else crop_size)
    dataset = _map(
        source,
        lambda image, mask: (augment.resize_image(image, size), augment.resize_mask(mask, size)),
        deterministic)
    dataset = _order_and_seed(dataset, data=data, training=training, seed=seed,
                              repeat=repeat, cache_file=cache_file)

    def prepare(example, element_seed):
        image, mask = example
        if training and data.working_size:
            patch_seed, element_seed = tf.unstack(
                tf.random.experimental.stateless_split(element_seed, 2))
            image, mask = augment.sample_patch(image, mask, patch_seed, crop_size,
                                               data.foreground_patch_fraction,
                                               len(data.class_names))
        if training:
            return augment.augment_for_segmentation(
                image, mask, element_seed, crop_size=crop_size, data=data)
        return augment.standardize(image), tf.cast(mask, tf.int32)

    dataset = _map(dataset, prepare, deterministic)
    return _finish(dataset, batch_size, drop_remainder, deterministic)


def graded_dataset(
    examples: Sequence[GradedExample],
    *,
    data: DataConfig,
    crop_size: int,
    batch_size: int,
    training: bool,
    seed: int,
    report: Optional[DecodeReport] = None,
    **pipeline_kwargs,
) -> tf.data.Dataset:
    """``graded_pipeline`` over image files; unreadable files follow ``data.skip_bad_images``.

    In training the record order is fully shuffled before decoding (see ``graded_source``).
    """
    source = graded_source(examples, skip_bad=data.skip_bad_images, report=report,
                           shuffle_seed=seed if training else None)
    return graded_pipeline(source, data=data, crop_size=crop_size, batch_size=batch_size,
                           training=training, seed=seed, **pipeline_kwargs)


def mask_dataset(
    examples: Sequence[MaskExample],
    *,
    data: DataConfig,
    crop_size: int,
    batch_size: int,
    training: bool,
    seed: int,
    report: Optional[DecodeReport] = None,
    mask_threshold: int = 0,
    **pipeline_kwargs,
) -> tf.data.Dataset:
    """``mask_pipeline`` over image and mask files, classes and priority from ``data``.

    In training the record order is fully shuffled before decoding (see ``graded_source``).
    """
    source = mask_source(examples, data.class_names, data.mask_priority,
                         skip_bad=data.skip_bad_images, report=report,
                         mask_threshold=mask_threshold, shuffle_seed=seed if training else None)
    return mask_pipeline(source, data=data, crop_size=crop_size, batch_size=batch_size,
                         training=training, seed=seed, **pipeline_kwargs)
