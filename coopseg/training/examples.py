"""The example lists every method trains and validates on, read the same way for all.

A data setting (split per role, ``masks_train_count``, ``validate_files``,
``skip_bad_images``) and the input seeds mean one thing for every method because both
input paths (``inputs.py``, ``decoupled_inputs.py``) read through here, and a
validation set that shares images with its training set is refused here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

from absl import logging

from coopseg.config import ConfigError, ExperimentConfig
from data_pipelines import datasets
from data_pipelines.decode import DecodeReport, validate_files
from data_pipelines.labels import partial_random_labels
from data_pipelines.records import GradedExample, MaskExample
from data_pipelines.subsets import nested_subset

Example = Union[GradedExample, MaskExample]
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class InputSeeds:
    """The seeds of a run's inputs, the same formula for every method.

    ``order`` shuffles the whole record list before decoding and is the same across
    resumes; ``augment`` seeds the shuffle buffer and every augmentation draw and is
    ``order + resume step``, so a resumed run draws anew but reproducibly.
    """

    order: int
    augment: int


def input_seeds(config: ExperimentConfig, start_step: int = 0) -> InputSeeds:
    """``data.seed + train.seed`` (+ the resume step for augmentation)."""
    order = config.data.seed + config.train.seed
    return InputSeeds(order=order, augment=order + start_step)


def _describe_split(fmt: str, role: str) -> str:
    split = datasets.split_for(fmt, role)
    return f"split {split!r}" if split else "no named splits: every image in it"


def graded_examples(config: ExperimentConfig, role: str,
                    report: Optional[DecodeReport] = None) -> List[GradedExample]:
    """The graded set of ``role`` (train | val), read from the split the role means.

    Training labels are partly randomised when ``data.clf_true_label_fraction`` < 1;
    ``data.validate_files`` decodes every file once first.
    """
    d = config.data
    path = d.graded_train if role == "train" else d.graded_val
    examples = datasets.load_graded(d.graded_format, path, role=role,
                                    strict=not d.skip_bad_images)
    if role == "train" and d.clf_true_label_fraction < 1.0:
        examples = partial_random_labels(examples, d.clf_true_label_fraction,
                                         num_grades=config.model.num_grades, seed=d.seed)
    if d.validate_files:
        examples = validate_files(examples, strict=not d.skip_bad_images, report=report)
    logging.info("graded %s: %d images from %s (%s, %s)", role, len(examples), path,
                 d.graded_format, _describe_split(d.graded_format, role))
    return examples


def mask_examples(config: ExperimentConfig, role: str,
                  report: Optional[DecodeReport] = None) -> List[MaskExample]:
    """The mask set of ``role`` (train | val), read from the split the role means.

    Training keeps ``data.masks_train_count`` images (a fixed nested subset, 0 = all);
    ``data.validate_files`` decodes every image and mask once first.
    """
    d = config.data
    path = d.masks_train if role == "train" else d.masks_val
    examples = []
    sets = datasets.mask_sets(path, d.masks_format)
    for index, (set_path, fmt) in enumerate(sets):
        found = datasets.load_masks(fmt, set_path, d.class_names, role=role,
                                    strict=not d.skip_bad_images)
        if len(sets) > 1:  # ids are unique within a set, not across sets
            found = [dataclasses.replace(e, image_id=f"{index}/{e.image_id}") for e in found]
        examples += found
    partial = sum(e.is_partial for e in examples)
    if partial:
        logging.info("masks %s: %d of %d images are partially annotated (marginal loss over "
                     "the classes their set does not mark)", role, partial, len(examples))
        if role == "train":
            check_every_class_annotated(examples, d.class_names, path)
    total = len(examples)
    if role == "train":
        examples = nested_subset(examples, d.masks_train_count, source=path)
    if d.validate_files:
        examples = validate_files(examples, class_names=d.class_names,
                                  mask_priority=d.mask_priority,
                                  strict=not d.skip_bad_images, report=report)
    subset = (f" (data.masks_train_count={d.masks_train_count} of {total})"
              if role == "train" and d.masks_train_count else "")
    logging.info("masks %s: %d images%s from %s", role, len(examples), subset,
                 "; ".join(f"{p} ({f}, {_describe_split(f, role)})" for p, f in sets))
    return examples


def check_every_class_annotated(examples: Sequence[MaskExample], class_names: Sequence[str],
                                source: str) -> None:
    """ConfigError naming the foreground classes no training image annotates: nothing
    would teach the segmenter where they are not, so under the marginal loss it could
    paint them anywhere (and the metrics would not count it)."""
    never = [name for k, name in enumerate(class_names[1:])
             if not any(not e.annotated or e.annotated[k] for e in examples)]
    if never:
        raise ConfigError(f"{source}: {', '.join(never)}: no training image annotates them; "
                          "drop them from --class_names or add a mask set that marks them")


def _file_digest(path: str) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


def shared_images(train: Sequence[Example], val: Sequence[Example]) -> List[tuple]:
    """``(val path, train path)`` for each validation image that is also a training image:
    the same file (after resolving links) or the same bytes.

    Only files of equal size are hashed, so two disjoint sets cost one ``stat`` per file.
    """
    train_paths = {os.path.realpath(e.image_path): e.image_path for e in train}
    pairs, candidates = [], []
    for e in val:
        real = os.path.realpath(e.image_path)
        if real in train_paths:
            pairs.append((e.image_path, train_paths[real]))
        else:
            candidates.append(e.image_path)
    by_size: Dict[int, List[str]] = defaultdict(list)
    for path in train_paths.values():
        by_size[_size(path)].append(path)
    digests: Dict[str, str] = {}

    def digest(path: str) -> str:
        if path not in digests:
            digests[path] = _file_digest(path)
        return digests[path]

    for path in candidates:
        size = _size(path)
        if size <= 0 or size not in by_size:
            continue
        same = [t for t in by_size[size] if digest(t) == digest(path)]
        if same:
            pairs.append((path, same[0]))
    return pairs


def check_held_out(train: Sequence[Example], val: Sequence[Example], what: str,
                   allow_overlap: bool) -> None:
    """ConfigError when a validation image of ``what`` is also a training image, naming
    how many and one pair; with ``allow_overlap`` a logged warning instead."""
    pairs = shared_images(train, val)
    if not pairs:
        logging.info("%s validation: none of its %d images is a training image", what, len(val))
        return
    message = (f"{len(pairs)} of the {len(val)} {what} validation images are also training "
               f"images (same file or same content), e.g. {pairs[0][0]!r} = {pairs[0][1]!r}: "
               "the validation numbers would not be held out")
    if not allow_overlap:
        raise ConfigError(message + "; choose a held-out set, or pass --allow_val_overlap "
                          "if you really mean it")
    logging.warning("%s (allowed by data.allow_val_overlap)", message)


def require_paths(config: ExperimentConfig, needed: Sequence[str]) -> None:
    """ConfigError naming every data path of ``needed`` (dotted ``data.`` fields) that is
    set but does not exist, before any model is built."""
    missing = []
    for name in needed:
        value = getattr(config.data, name)
        # A mask path may name several sets, comma-separated (``datasets.mask_sets``).
        paths = ([path for path, _ in datasets.mask_sets(value, config.data.masks_format)]
                 if name.startswith("masks") else [value] if value else [])
        missing += [f"--{name}={path}" for path in paths if not os.path.exists(path)]
    if missing:
        raise ConfigError(f"data path(s) do not exist: {', '.join(missing)}")
