"""Turn a DataConfig into the four batched datasets the trainer reads.

Records are read, checked and held out up front (``training/examples.py``: reader errors
name files before any graph runs); decoding and augmentation happen in tf.data. Seeds
follow ``examples.input_seeds``: after a resume the stream differs from the one before
the interruption but is still fully determined by (seed, resume step).
"""
from __future__ import annotations

from typing import Dict, Optional

from absl import logging

from coopseg.config import DECOUPLED_METHODS, ConfigError, ExperimentConfig
from coopseg.training.examples import (check_held_out, graded_examples, input_seeds,
                                       mask_examples)
from coopseg.training.agent_inputs import Inputs
from data_pipelines import pipeline
from data_pipelines.decode import DecodeReport, graded_source, mask_source
from data_pipelines.records import DataError
from data_pipelines.tfrecords import graded_source_from_tfrecords, mask_source_from_tfrecords


def _tfrecord_note(kind: str) -> None:
    logging.info("%s validation: TFRecord sets are not checked for images shared with the "
                 "training set (the converter writes each split from its own source)", kind)


def _graded_sources(config: ExperimentConfig, report: DecodeReport, with_train: bool,
                    order_seed: int):
    """(train source or None, val source or None) of the graded set."""
    d = config.data
    if d.graded_format == "tfrecord":
        if with_train and d.clf_true_label_fraction < 1.0:
            raise ConfigError("data.clf_true_label_fraction < 1 needs image ids: use a folder "
                              "format, not tfrecord")
        if with_train and d.graded_val:
            _tfrecord_note("graded")
        return (graded_source_from_tfrecords(d.graded_train, "train") if with_train else None,
                graded_source_from_tfrecords(d.graded_val, "val") if d.graded_val else None)
    train = graded_examples(config, "train", report) if with_train else None
    val = graded_examples(config, "val", report) if d.graded_val else None
    if train is not None and val is not None:
        check_held_out(train, val, "graded", d.allow_val_overlap)
    # Readers return sorted lists (10_left next to 10_right): shuffle the whole record
    # order before decoding, not just within the shuffle buffer.
    make = lambda examples, seed: graded_source(examples, skip_bad=d.skip_bad_images,
                                                report=report, shuffle_seed=seed)
    return (make(train, order_seed) if train is not None else None,
            make(val, None) if val is not None else None)


def _mask_sources(config: ExperimentConfig, report: DecodeReport, with_train: bool,
                  order_seed: int):
    """(train source or None, val source or None) of the mask set."""
    d = config.data
    if d.masks_format == "tfrecord":
        if with_train and d.masks_val:
            _tfrecord_note("mask")
        read = lambda path, split: mask_source_from_tfrecords(path, split,
                                                              class_names=d.class_names)
        return (read(d.masks_train, "train") if with_train else None,
                read(d.masks_val, "val") if d.masks_val else None)
    train = mask_examples(config, "train", report) if with_train else None
    val = mask_examples(config, "val", report) if d.masks_val else None
    if train is not None and val is not None:
        check_held_out(train, val, "mask", d.allow_val_overlap)
    make = lambda examples, seed: mask_source(examples, d.class_names, d.mask_priority,
                                              skip_bad=d.skip_bad_images, report=report,
                                              shuffle_seed=seed)
    return (make(train, order_seed) if train is not None else None,
            make(val, None) if val is not None else None)


def graded_and_mask_inputs(config: ExperimentConfig, start_step: int = 0,
                           report: Optional[DecodeReport] = None) -> Inputs:
    """Grades for the classifier agent, class-index masks for the segmentation agent: the
    datasets of the agents ``config.train`` trains (validation sets if given)."""
    d, tc, size = config.data, config.train, config.model.input_size
    report = report if report is not None else DecodeReport()
    seeds = input_seeds(config, start_step)
    inputs = Inputs()
    if tc.trains_classifier:
        if not d.graded_train:
            raise ConfigError(f"train.mode={tc.mode} needs graded data: set --graded_train")
        batch = tc.clf_agent().batch_size
        train, val = _graded_sources(config, report, True, seeds.order)
        inputs.clf_train = pipeline.graded_pipeline(
            train, data=d, crop_size=size, batch_size=batch, training=True, seed=seeds.augment)
        if val is not None:
            inputs.clf_val = pipeline.graded_pipeline(
                val, data=d, crop_size=size, batch_size=batch, training=False,
                seed=seeds.augment)
    if tc.trains_segmenter:
        if not d.masks_train:
            raise ConfigError(f"train.mode={tc.mode} needs mask data: set --masks_train")
        batch = tc.seg.batch_size
        train, val = _mask_sources(config, report, True, seeds.order)
        inputs.seg_train = pipeline.mask_pipeline(
            train, data=d, crop_size=size, batch_size=batch, training=True,
            seed=seeds.augment + 1)
        if val is not None:
            inputs.seg_val = pipeline.mask_pipeline(
                val, data=d, crop_size=size, batch_size=max(batch, 4), training=False,
                seed=seeds.augment)
    return inputs


def build_eval_inputs(config: ExperimentConfig, report: Optional[DecodeReport] = None,
                      batch_size: int = 8) -> Inputs:
    """Only the validation sets (``data.graded_val``, ``data.masks_val``, each read from
    its format's held-out split), unaugmented."""
    d, size = config.data, config.model.input_size
    report = report if report is not None else DecodeReport()
    inputs = Inputs()
    if d.graded_val:
        _, val = _graded_sources(config, report, False, d.seed)
        inputs.clf_val = pipeline.graded_pipeline(
            val, data=d, crop_size=size, batch_size=batch_size, training=False, seed=d.seed)
    if d.masks_val:
        _, val = _mask_sources(config, report, False, d.seed)
        inputs.seg_val = pipeline.mask_pipeline(
            val, data=d, crop_size=size, batch_size=batch_size, training=False, seed=d.seed)
    if inputs.clf_val is None and inputs.seg_val is None:
        raise ConfigError("nothing to evaluate: set --graded_val and/or --masks_val")
    return inputs


def validation_gaps(config: ExperimentConfig, inputs: Inputs) -> Dict[str, str]:
    """Agent -> why it is never validated, for every agent that trains without a
    validation set (empty when every agent that trains is validated)."""
    gaps = {}
    if inputs.clf_train is not None and inputs.clf_val is None:
        # DecoupledNet's classifier is validated on the mask set's image-level labels.
        flag = "--masks_val" if config.method in DECOUPLED_METHODS else "--graded_val"
        gaps["classifier"] = f"no {flag}: the classifier is never validated"
    if inputs.seg_train is not None and inputs.seg_val is None:
        gaps["segmenter"] = "no --masks_val: the segmenter is never validated"
    return gaps


__all__ = ["graded_and_mask_inputs", "build_eval_inputs", "validation_gaps", "DataError"]
