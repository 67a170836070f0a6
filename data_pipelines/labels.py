"""Label sampling over reader records: partial random labels, patient splits, strong subsets.

Every random choice is a hash of (seed, purpose, image or patient id), not a draw
from a shared generator, so it is fixed per image: it does not depend on list order,
and the same image gets the same choice in any subset of the data.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

from coopseg.config import NUM_GRADES, ConfigError
from data_pipelines.records import DataError, GradedExample, MaskExample


def stable_uniform(seed: int, purpose: str, key: str) -> float:
    """A number in [0, 1) fixed by (seed, purpose, key); same on every machine and run.

    (Python's ``hash`` is salted per process, so it would not be reproducible.)
    """
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def partial_random_labels(examples: Sequence[GradedExample], true_fraction: float,
                          num_grades: int = NUM_GRADES, seed: int = 0) -> List[GradedExample]:
    """Keep about ``true_fraction`` of the grades; give the rest a uniform random grade.

    JointSeg Sec. II-C trains the classifier agent with only ~20 % true labels. An image
    keeps its label when its stable uniform is below ``true_fraction``, so the kept set
    at 20 % is contained in the kept set at 50 %. A random grade may equal the true one
    by chance (uniform over all grades, as in the paper's "random labels"). Order and
    length of ``examples`` are preserved; the counts are logged.
    """
    if not 0.0 <= true_fraction <= 1.0:
        raise ConfigError(f"true_fraction must be in [0, 1], got {true_fraction}")
    if num_grades < 2:
        raise ConfigError(f"num_grades must be >= 2, got {num_grades}")
    out, replaced, changed = [], 0, 0
    for example in examples:
        if stable_uniform(seed, "keep_label", example.image_id) < true_fraction:
            out.append(example)
            continue
        grade = int(stable_uniform(seed, "random_grade", example.image_id) * num_grades)
        replaced += 1
        changed += grade != example.grade
        out.append(dataclasses.replace(example, grade=grade))
    logging.info("partial random labels (true_fraction=%.3f, seed=%d): kept %d true, "
                 "randomised %d (%d now differ from the truth)", true_fraction, seed,
                 len(out) - replaced, replaced, changed)
    return out


def split_by_patient(examples: Sequence[GradedExample], val_fraction: float,
                     seed: int = 0) -> Tuple[List[GradedExample], List[GradedExample]]:
    """(train, val), each sorted by image id; all images of a patient land on one side.

    Patients (``patient_id``, or the image id when empty) are ranked by a stable hash
    and moved to val until it holds at least ``val_fraction`` of the images; train
    always keeps at least one patient. Deterministic for a given seed and set.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_patient: Dict[str, List[GradedExample]] = {}
    for example in examples:
        by_patient.setdefault(example.patient_id or example.image_id, []).append(example)
    if val_fraction > 0 and len(by_patient) < 2:
        raise DataError(f"cannot split {len(examples)} image(s) of {len(by_patient)} patient(s) "
                        "into train and val: need at least two patients")
    ranked = sorted(by_patient, key=lambda p: (stable_uniform(seed, "val_split", p), p))
    target = val_fraction * len(examples)
    val: List[GradedExample] = []
    val_patients = 0
    while len(val) < target and val_patients < len(ranked) - 1:
        val.extend(by_patient[ranked[val_patients]])
        val_patients += 1
    train = [e for p in ranked[val_patients:] for e in by_patient[p]]
    key = lambda e: e.image_id  # noqa: E731
    return sorted(train, key=key), sorted(val, key=key)


def strong_subset(mask_examples: Sequence[MaskExample], per_class: Optional[int],
                  class_names: Sequence[str], seed: int = 0) -> List[MaskExample]:
    """DecoupledNet's "N strong annotations per class" (Sec. 3: 5, 10, 25 or all).

    For each foreground class, the N images containing it (by ``image_labels``) with
    the lowest stable hash for (seed, class) are picked; the union, without duplicates,
    is returned sorted by image id. ``per_class`` 0 or None means all examples. A
    class with fewer than N images contributes all it has (logged).
    """
    if not per_class:
        return sorted(mask_examples, key=lambda e: e.image_id)
    if per_class < 0:
        raise ConfigError(f"per_class must be >= 0 or None, got {per_class}")
    foreground = list(class_names[1:])
    unlabelled = [e.image_id for e in mask_examples if len(e.image_labels) != len(foreground)]
    if unlabelled:
        raise DataError(f"strong_subset needs image_labels over the {len(foreground)} foreground "
                        f"classes {foreground}; {len(unlabelled)} example(s) lack them, e.g. "
                        f"{unlabelled[:5]} (load VOC with with_image_labels=True)")
    chosen: Dict[str, MaskExample] = {}
    for index, name in enumerate(foreground):
        holders = [e for e in mask_examples if e.image_labels[index]]
        holders.sort(key=lambda e: (stable_uniform(seed, f"strong:{name}", e.image_id), e.image_id))
        if len(holders) < per_class:
            logging.warning("strong_subset: class %r has only %d image(s), fewer than %d",
                            name, len(holders), per_class)
        chosen.update((e.image_id, e) for e in holders[:per_class])
    return sorted(chosen.values(), key=lambda e: e.image_id)


def grade_histogram(examples: Sequence[GradedExample], num_grades: int = NUM_GRADES) -> List[int]:
    """Number of examples per grade 0..num_grades-1 (DataError for a grade outside)."""
    counts = [0] * num_grades
    for example in examples:
        if not 0 <= example.grade < num_grades:
            raise DataError(f"{example.image_path}: grade {example.grade} outside "
                            f"0..{num_grades - 1}")
        counts[example.grade] += 1
    return counts
