"""Label helpers: partial random labels, patient splits, strong subsets, histograms."""
from __future__ import annotations

import random

import pytest

from coopseg.config import ConfigError
from data_pipelines.labels import (grade_histogram, partial_random_labels, split_by_patient,
                                   stable_uniform, strong_subset)
from data_pipelines.records import DataError, GradedExample, MaskExample


def graded(n, grade=lambda i: i % 5):
    return [GradedExample(image_path=f"/x/{i}_{side}.jpeg", grade=grade(i), image_id=f"{i}_{side}",
                          patient_id=str(i)) for i in range(n) for side in ("left", "right")]


def test_stable_uniform_is_fixed_and_in_range():
    values = [stable_uniform(3, "p", str(i)) for i in range(200)]
    assert values == [stable_uniform(3, "p", str(i)) for i in range(200)]
    assert all(0.0 <= v < 1.0 for v in values) and len(set(values)) == 200
    assert stable_uniform(3, "p", "a") != stable_uniform(4, "p", "a")


def test_partial_random_labels_extremes_and_order():
    examples = graded(50)
    assert partial_random_labels(examples, 1.0) == examples
    randomised = partial_random_labels(examples, 0.0, seed=1)
    assert [e.image_id for e in randomised] == [e.image_id for e in examples]
    assert sum(a.grade != b.grade for a, b in zip(examples, randomised)) > 40


def test_partial_random_labels_fixed_per_image_not_by_order():
    examples = graded(300)
    shuffled = examples[:]
    random.Random(0).shuffle(shuffled)
    by_id = {e.image_id: e.grade for e in partial_random_labels(examples, 0.2, seed=7)}
    assert {e.image_id: e.grade for e in partial_random_labels(shuffled, 0.2, seed=7)} == by_id
    subset = partial_random_labels(examples[:40], 0.2, seed=7)
    assert all(by_id[e.image_id] == e.grade for e in subset)
    assert {e.image_id: e.grade for e in partial_random_labels(examples, 0.2, seed=8)} != by_id


def test_partial_random_labels_fraction_nesting_and_uniform_grades():
    examples = graded(1000, grade=lambda i: 0)  # 2000 images, all truly grade 0
    out20 = partial_random_labels(examples, 0.2)
    out50 = partial_random_labels(examples, 0.5)
    changed20 = {e.image_id: e.grade for e in out20 if e.grade}
    changed50 = {e.image_id: e.grade for e in out50 if e.grade}
    # 80 % randomised, 4 of 5 random grades differ from 0: 64 % changed.
    assert abs(len(changed20) / len(examples) - 0.64) < 0.04
    assert abs(len(changed50) / len(examples) - 0.40) < 0.04
    # Randomised at 50 % implies randomised at 20 %, with the same random grade.
    assert all(changed20.get(image_id) == grade for image_id, grade in changed50.items())
    grades = [e.grade for e in out20]
    assert all(abs(grades.count(g) / len(grades) - 0.16) < 0.04 for g in range(1, 5))


def test_partial_random_labels_rejects_bad_fraction():
    with pytest.raises(ConfigError):
        partial_random_labels(graded(2), 1.5)


def test_split_by_patient_keeps_patients_together_and_is_deterministic():
    examples = graded(100)
    train, val = split_by_patient(examples, 0.2, seed=3)
    assert not {e.patient_id for e in train} & {e.patient_id for e in val}
    assert sorted(e.image_id for e in train + val) == sorted(e.image_id for e in examples)
    assert len(val) == 40  # 2 images per patient: exactly 20 %
    assert [e.image_id for e in val] == sorted(e.image_id for e in val)
    again = split_by_patient(list(reversed(examples)), 0.2, seed=3)
    assert (train, val) == again
    assert split_by_patient(examples, 0.2, seed=4)[1] != val


def test_split_by_patient_edges():
    examples = graded(3)
    assert split_by_patient(examples, 0.0) == (sorted(examples, key=lambda e: e.image_id), [])
    train, val = split_by_patient(examples, 0.9)
    assert train and val  # train keeps at least one patient
    with pytest.raises(DataError, match="two patients"):
        split_by_patient(graded(1), 0.5)
    with pytest.raises(ConfigError):
        split_by_patient(examples, 1.0)


CLASSES = ("background", "cat", "dog", "bird")


def masks(labels):
    return [MaskExample(image_path=f"/v/{i:03d}.jpg", image_id=f"{i:03d}",
                        label_path=f"/v/{i:03d}.png", image_labels=lab)
            for i, lab in enumerate(labels)]


def test_strong_subset_picks_n_per_class_reproducibly():
    pool = masks([(1, 0, 0)] * 20 + [(0, 1, 0)] * 20 + [(1, 1, 0)] * 5 + [(0, 0, 1)] * 2)
    subset = strong_subset(pool, 3, CLASSES, seed=0)
    ids = [e.image_id for e in subset]
    assert ids == sorted(set(ids))
    for index in range(2):
        assert sum(e.image_labels[index] for e in subset) >= 3
    assert sum(e.image_labels[2] for e in subset) == 2  # bird has only two images
    assert len(subset) <= 3 + 3 + 2
    assert strong_subset(list(reversed(pool)), 3, CLASSES, seed=0) == subset
    assert strong_subset(pool, 3, CLASSES, seed=1) != subset
    assert strong_subset(pool, None, CLASSES) == pool
    assert strong_subset(pool, 0, CLASSES) == pool


def test_strong_subset_needs_image_labels():
    pool = masks([(1, 0, 0), ()])
    with pytest.raises(DataError, match="001"):
        strong_subset(pool, 1, CLASSES, seed=0)


def test_grade_histogram():
    assert grade_histogram(graded(5)) == [2, 2, 2, 2, 2]
    bad = [GradedExample(image_path="/x/a.jpeg", grade=-1, image_id="a")]
    with pytest.raises(DataError, match="a.jpeg"):
        grade_histogram(bad)
