"""Nested training subsets: "the first N images" of a set in one fixed, seeded order.

A learning curve trains on N = 10, 30, 100, ... images of one set. The first N of one
permutation of the whole (sorted) list nest (a larger N only adds images) and do not
depend on the training seed or the method: every row and seed at one N sees the same
images and differs only in what it learns.
"""
from __future__ import annotations

from typing import List, Sequence, TypeVar

import numpy as np

from coopseg.config import ConfigError

T = TypeVar("T")
# Fixed, never the training seed: the subset must not change with --seed.
SUBSET_SEED = 20171022


def nested_subset(examples: Sequence[T], count: int, source: str = "") -> List[T]:
    """The first ``count`` of ``examples`` (as sorted by the reader) in the fixed order
    (all of them, in reader order, when ``count`` is 0).

    Raises ConfigError naming ``source`` when the set has fewer than ``count`` images.
    """
    if count == 0:
        return list(examples)
    if count > len(examples):
        raise ConfigError(f"data.masks_train_count={count}, but {source or 'the set'} has "
                          f"only {len(examples)} usable images")
    # A permutation, not the sorted order: it keeps a subset from being, say, all images
    # of one camera or patient when file names group them.
    order = np.random.default_rng(SUBSET_SEED).permutation(len(examples))
    return [examples[i] for i in order[:count]]
