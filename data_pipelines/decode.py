"""Stage 1 of the input pipelines: records -> decoded uint8 examples.

``graded_source`` and ``mask_source`` turn the readers' record lists into ``tf.data``
datasets with the element structure of the TFRecord sources, so ``pipeline.py`` takes
either. Pixels come from ``imageio`` (OpenCV) inside ``tf.numpy_function``, with errors
that name the file; ``validate_files`` is the up-front check.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np
import tensorflow as tf
from absl import logging

from coopseg.config import IGNORE_LABEL, ConfigError
from data_pipelines.imageio import (UnreadableImageError, mask_paint_order, read_image,
                                    read_mask_example)
from data_pipelines.records import DataError, GradedExample, MaskExample

Example = TypeVar("Example", GradedExample, MaskExample)


class DecodeReport:
    """Thread-safe record of the files a source could not read.

    Each file is logged and counted once, however many epochs read it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bad: Dict[str, str] = {}

    def record(self, path: str, reason: str) -> None:
        with self._lock:
            if path in self._bad:
                return
            self._bad[path] = reason
        logging.warning("Skipping unreadable image %s: %s", path, reason)

    @property
    def bad_files(self) -> Dict[str, str]:
        """file path -> reason, for every file skipped so far."""
        with self._lock:
            return dict(self._bad)

    @property
    def num_bad(self) -> int:
        with self._lock:
            return len(self._bad)


# ------------------------------------------------------------------ tf.data sources

def _source_options() -> tf.data.Options:
    options = tf.data.Options()
    # Decoding is a pure function of the record index, so an iterator checkpoint that
    # ignores the Python function's "external state" restores exactly.
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE)
    return options


def _decode_and_drop_failed(dataset: tf.data.Dataset, decode_in_graph,
                            shuffle_seed: Optional[int]) -> tf.data.Dataset:
    """Map the decoder (parallel, in order), then drop and strip its trailing ``ok`` flag.

    The optional shuffle permutes record indices, not pixels, so it can cover the whole
    set: readers list files sorted (EyePACS ``10_left`` next to ``10_right``), which a
    bounded shuffle buffer after decoding would only mix locally. AutoGraph is
    skipped: nothing here needs it, and it only adds tracing time.
    """
    if shuffle_seed is not None:
        dataset = dataset.shuffle(max(1, int(dataset.cardinality())), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    plain = tf.autograph.experimental.do_not_convert
    dataset = dataset.map(plain(decode_in_graph), tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.filter(plain(lambda *element: element[-1]))
    dataset = dataset.map(plain(lambda *element: element[:-1]))
    return dataset.with_options(_source_options())


def graded_source(
    examples: Sequence[GradedExample],
    *,
    skip_bad: bool = True,
    report: Optional[DecodeReport] = None,
    shuffle_seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Dataset of ``(image uint8 [H, W, 3], grade int32 [])``, in the order of ``examples``.

    With ``skip_bad`` unreadable images are dropped and recorded in ``report`` (pass
    one to read the count); otherwise they raise. Decoding runs in parallel with a
    deterministic order (OpenCV releases the GIL while it decodes). ``shuffle_seed``
    shuffles the whole record order before decoding, anew each iteration; see
    ``_decode_and_drop_failed``.
    """
    report = report if report is not None else DecodeReport()
    examples = list(examples)

    def decode(index: np.int64) -> Tuple[np.ndarray, np.bool_]:
        example = examples[int(index)]
        try:
            return read_image(example.image_path), np.bool_(True)
        except UnreadableImageError as err:
            if not skip_bad:
                raise
            report.record(example.image_path, str(err))
            return np.zeros((1, 1, 3), np.uint8), np.bool_(False)

    def decode_in_graph(index, grade):
        image, ok = tf.numpy_function(decode, [index], (tf.uint8, tf.bool), name="decode_image")
        return tf.ensure_shape(image, [None, None, 3]), grade, ok

    grades = np.array([example.grade for example in examples], np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(examples), dtype=np.int64), grades))
    return _decode_and_drop_failed(dataset, decode_in_graph, shuffle_seed)


def mask_source(
    examples: Sequence[MaskExample],
    class_names: Sequence[str],
    mask_priority: Sequence[str],
    *,
    skip_bad: bool = True,
    report: Optional[DecodeReport] = None,
    mask_threshold: int = 0,
    shuffle_seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Dataset of ``(image uint8 [H, W, 3], mask uint8 [H, W])``, the mask a class index
    per pixel with 255 = ignore; see ``read_mask_example``.

    Two kinds of problems are told apart. An ``UnreadableImageError`` (empty, truncated,
    corrupt, not an image, missing): with ``skip_bad`` the example is dropped, logged
    once with its file name and counted in ``report``; without it the error is raised.
    Any other ``DataError`` (a mask whose size differs from its image, label values that
    are not classes) is an annotation bug and always raised: skipping would hide it.
    ``shuffle_seed`` as in ``graded_source``.
    """
    if len(class_names) > IGNORE_LABEL:
        raise ConfigError(f"{len(class_names)} classes do not fit a uint8 mask with ignore 255")
    report = report if report is not None else DecodeReport()
    examples = list(examples)
    if any(example.mask_paths or example.drawn for example in examples):
        mask_paint_order(class_names, mask_priority)  # fail now on a bad priority list

    def decode(index: np.int64) -> Tuple[np.ndarray, np.ndarray, np.bool_]:
        example = examples[int(index)]
        try:
            image, mask = read_mask_example(example, class_names, mask_priority, mask_threshold)
            return image, mask, np.bool_(True)
        except UnreadableImageError as err:
            if not skip_bad:
                raise
            report.record(example.image_path, str(err))
            return np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), np.bool_(False)

    def decode_in_graph(index):
        image, mask, ok = tf.numpy_function(
            decode, [index], (tf.uint8, tf.uint8, tf.bool), name="decode_image_and_mask")
        return tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(mask, [None, None]), ok

    dataset = tf.data.Dataset.range(len(examples))
    return _decode_and_drop_failed(dataset, decode_in_graph, shuffle_seed)


# ----------------------------------------------------------------------- pre-flight

def validate_files(
    examples: Sequence[Example],
    *,
    class_names: Sequence[str] = (),
    mask_priority: Sequence[str] = (),
    strict: bool = False,
    report: Optional[DecodeReport] = None,
    mask_threshold: int = 0,
    num_threads: Optional[int] = None,
) -> List[Example]:
    """Decode every example once, before training, and return the usable ones.

    The errors a source would raise mid-epoch inside the graph (where they reach the
    user wrapped in an InvalidArgumentError, message intact) surface here as one plain
    DataError that lists every offending file. Unreadable files are recorded
    in ``report`` and left out (or, when ``strict``, raise); annotation errors always
    raise. ``class_names``/``mask_priority`` are needed for MaskExamples only.

    Cost: one full decode of every image and mask, spread over ``num_threads``
    (default: all cores; OpenCV releases the GIL). Roughly the time of one
    decode-only epoch, so it is optional: a source skips or raises by itself anyway.
    """
    report = report if report is not None else DecodeReport()

    def check(example: Union[GradedExample, MaskExample]) -> Optional[DataError]:
        try:
            if isinstance(example, MaskExample):
                read_mask_example(example, class_names, mask_priority, mask_threshold)
            else:
                read_image(example.image_path)
        except DataError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=num_threads or os.cpu_count() or 1) as pool:
        errors = list(pool.map(check, examples))
    fatal = [err for err in errors
             if err is not None and (strict or not isinstance(err, UnreadableImageError))]
    if fatal:
        listed = "\n  ".join(str(err) for err in fatal[:20])
        more = f"\n  ... and {len(fatal) - 20} more" if len(fatal) > 20 else ""
        raise DataError(f"{len(fatal)} of {len(examples)} examples are unusable:\n  {listed}{more}")
    kept = []
    for example, err in zip(examples, errors):
        if err is None:
            kept.append(example)
        else:
            report.record(example.image_path, str(err))
    return kept
