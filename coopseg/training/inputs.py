"""Turn a DataConfig into the four batched datasets the trainer reads.

Records are read and checked up front (reader errors name files before any graph
runs); decoding and augmentation happen in tf.data. After a resume the data seed is
``seed + step``: the stream differs from the one before the interruption but is
still fully determined by (seed, resume step).
"""
from __future__ import annotations

from typing import List, Optional

import tensorflow as tf
from absl import logging

from coopseg.config import ConfigError, ExperimentConfig
from coopseg.training.loop import Inputs
from data_pipelines import datasets, pipeline
from data_pipelines.decode import DecodeReport, graded_source, mask_source, validate_files
from data_pipelines.labels import partial_random_labels
from data_pipelines.records import DataError, GradedExample, MaskExample
from data_pipelines.subsets import nested_subset
from data_pipelines.tfrecords import graded_source_from_tfrecords, mask_source_from_tfrecords


def load_graded_examples(fmt: str, path: str, strict: bool) -> List[GradedExample]:
    return datasets.load_graded(fmt, path, strict=strict)


def load_mask_examples(fmt: str, path: str, class_names, strict: bool) -> List[MaskExample]:
    return datasets.load_masks(fmt, path, class_names, strict=strict)


def _graded_source(config: ExperimentConfig, path: str, split: str, training: bool,
                   report: DecodeReport) -> tf.data.Dataset:
    d = config.data
    if d.graded_format == "tfrecord":
        if training and d.clf_true_label_fraction < 1.0:
            raise ConfigError("data.clf_true_label_fraction < 1 needs image ids: use a folder "
                              "format, not tfrecord")
        return graded_source_from_tfrecords(path, split)
    examples = load_graded_examples(d.graded_format, path, strict=not d.skip_bad_images)
    if training and d.clf_true_label_fraction < 1.0:
        examples = partial_random_labels(examples, d.clf_true_label_fraction,
                                         num_grades=config.model.num_grades, seed=d.seed)
    if d.validate_files:
        examples = validate_files(examples, strict=not d.skip_bad_images, report=report)
    logging.info("graded %s: %d images from %s", split, len(examples), path)
    # Readers return sorted lists (10_left next to 10_right): shuffle the whole record
    # order before decoding, not just within the shuffle buffer.
    return graded_source(examples, skip_bad=d.skip_bad_images, report=report,
                         shuffle_seed=(d.seed + config.train.seed) if training else None)


def _mask_source(config: ExperimentConfig, path: str, split: str, training: bool,
                 report: DecodeReport) -> tf.data.Dataset:
    d = config.data
    if d.masks_format == "tfrecord":
        return mask_source_from_tfrecords(path, split, class_names=d.class_names)
    examples = load_mask_examples(d.masks_format, path, d.class_names,
                                  strict=not d.skip_bad_images)
    if training:
        examples = nested_subset(examples, d.masks_train_count, source=path)
    if d.validate_files:
        examples = validate_files(examples, class_names=d.class_names,
                                  mask_priority=d.mask_priority,
                                  strict=not d.skip_bad_images, report=report)
    logging.info("masks %s: %d images from %s", split, len(examples), path)
    return mask_source(examples, d.class_names, d.mask_priority, skip_bad=d.skip_bad_images,
                       report=report,
                       shuffle_seed=(d.seed + config.train.seed) if training else None)


def graded_and_mask_inputs(config: ExperimentConfig, start_step: int = 0,
                           report: Optional[DecodeReport] = None) -> Inputs:
    """Grades for the classifier agent, class-index masks for the segmentation agent: the
    datasets of the agents ``config.train.mode`` trains (validation sets if given)."""
    d, tc, size = config.data, config.train, config.model.input_size
    report = report if report is not None else DecodeReport()
    seed = d.seed + tc.seed + start_step
    inputs = Inputs()
    if tc.mode in ("joint", "clf_only"):
        if not d.graded_train:
            raise ConfigError(f"train.mode={tc.mode} needs graded data: set --graded_train")
        batch = tc.clf_agent().batch_size
        inputs.clf_train = pipeline.graded_pipeline(
            _graded_source(config, d.graded_train, "train", True, report), data=d,
            crop_size=size, batch_size=batch, training=True, seed=seed)
        if d.graded_val:
            inputs.clf_val = pipeline.graded_pipeline(
                _graded_source(config, d.graded_val, "val", False, report), data=d,
                crop_size=size, batch_size=batch, training=False, seed=seed)
    if tc.mode in ("joint", "seg_only"):
        if not d.masks_train:
            raise ConfigError(f"train.mode={tc.mode} needs mask data: set --masks_train")
        batch = tc.seg.batch_size
        inputs.seg_train = pipeline.mask_pipeline(
            _mask_source(config, d.masks_train, "train", True, report), data=d, crop_size=size,
            batch_size=batch, training=True, seed=seed + 1)
        if d.masks_val:
            inputs.seg_val = pipeline.mask_pipeline(
                _mask_source(config, d.masks_val, "val", False, report), data=d, crop_size=size,
                batch_size=max(batch, 4), training=False, seed=seed)
    return inputs


def build_eval_inputs(config: ExperimentConfig, report: Optional[DecodeReport] = None,
                      batch_size: int = 8) -> Inputs:
    """Only the validation sets (``data.graded_val``, ``data.masks_val``), unaugmented."""
    d, size = config.data, config.model.input_size
    report = report if report is not None else DecodeReport()
    inputs = Inputs()
    if d.graded_val:
        inputs.clf_val = pipeline.graded_pipeline(
            _graded_source(config, d.graded_val, "val", False, report), data=d,
            crop_size=size, batch_size=batch_size, training=False, seed=d.seed)
    if d.masks_val:
        inputs.seg_val = pipeline.mask_pipeline(
            _mask_source(config, d.masks_val, "val", False, report), data=d, crop_size=size,
            batch_size=batch_size, training=False, seed=d.seed)
    if inputs.clf_val is None and inputs.seg_val is None:
        raise ConfigError("nothing to evaluate: set --graded_val and/or --masks_val")
    return inputs


__all__ = ["graded_and_mask_inputs", "build_eval_inputs", "DataError"]
