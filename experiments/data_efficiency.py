"""The data-efficiency suite: when does cooperation help? Learning curves over mask-set size.

One large graded set stays fixed while every row trains on nested subsets of N mask images
(``MASK_COUNTS``), as ``<row>__masks<N>`` in ``<out>/<row>__masks<N>/``, against the
segmenter alone; ``experiments.learning_curve`` reports it (docs/experiments.md).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from coopseg.config import ConfigError
from data_pipelines import datasets
from data_pipelines.synthetic import ensure_dataset
from experiments.data_source import DataSource
from experiments.scales import data_config

NAME = "data_efficiency"
REFERENCE_ROW = "jointseg_seg_only"
# (row module, label in the tables and figure). The reference comes first: JointSeg's
# segmenter alone, which every other row is compared with.
BASE_ROWS: Tuple[Tuple[str, str], ...] = (
    (REFERENCE_ROW, "segmenter alone (seg_only)"),
    ("jointseg", "JointSeg (this scale's recipe)"),
    ("ablation_lr_ratio_30", "JointSeg, LR ratio 30 (paper)"),
    ("ablation_lr_ratio_0_3", "JointSeg, LR ratio 0.3"),
    ("jointseg_two_step", "two-step (grader first)"),
    ("unet_random_init", "Inception-UNet, random init"),
    ("coop_clf_encoder_lr_0_1", "JointSeg + clf encoder LR x0.1"),
    ("coop_normalize", "JointSeg + gradient normalize"),
    ("coop_pcgrad", "JointSeg + PCGrad"),
    ("coop_per_agent_bn", "JointSeg + per-agent BN stats"),
)
LABELS: Dict[str, str] = dict(BASE_ROWS)
# ``--rows=core``: the reference, the paper's recipe at this scale and the three
# variants that came closest to the reference in the first full seed. Three seeds of
# these take about 3 hours at ``small`` on 2 CPU cores; all ten rows about 5.
CORE_ROWS: Tuple[str, ...] = (REFERENCE_ROW, "jointseg", "ablation_lr_ratio_0_3",
                              "coop_clf_encoder_lr_0_1", "coop_normalize")
# Mask-training subset sizes per scale. ``small``: 10 to 300 masks on a 4000-image
# graded set (>= 10x the largest subset); ``tiny``: tests.
MASK_COUNTS: Dict[str, Tuple[int, ...]] = {"paper": (10, 30, 100, 300),
                                           "small": (10, 30, 100, 300), "tiny": (4, 8)}
GRADED_IMAGES: Dict[str, int] = {"paper": 4000, "small": 4000, "tiny": 80}
# Validation sets: larger than the scale's usual mask validation set, because the
# verdicts rest on differences of a few points.
VAL_IMAGES: Dict[str, Tuple[int, int]] = {"paper": (1000, 200), "small": (160, 100),
                                          "tiny": (16, 8)}  # (graded, masks)
# Validations per stage: the learning curve within a run, from which "steps to reach a
# given lesion mIoU" is read.
EVALS_PER_RUN = 4
_VARIANT = re.compile(r"^(?P<base>\w+?)__masks(?P<count>\d+)$")


def variant(row: str, count: int) -> str:
    """The name of ``row`` trained on ``count`` mask images."""
    return f"{row}__masks{count}"


def split_variant(row: str) -> Tuple[str, Optional[int]]:
    """``"jointseg__masks30"`` -> ``("jointseg", 30)``; a plain row -> ``(row, None)``."""
    match = _VARIANT.match(row)
    if not match:
        return row, None
    return match.group("base"), int(match.group("count"))


def apply_variant(stages: List, count: int) -> None:
    """Point the row's stages at ``count`` mask images and validate them several times.

    A grader-only stage (clf_only) never reads masks: it keeps the full set, so its
    fingerprint is the same at every N and the runner trains it once per seed.
    """
    if count < 1:
        raise ConfigError(f"a mask-set size must be >= 1, got {count}")
    for stage in stages:
        tc = stage.config.train
        stage.config.run.eval_every = max(1, tc.steps // EVALS_PER_RUN)
        if tc.trains_segmenter:
            stage.config.data.masks_train_count = count


def rows(counts: Sequence[int], base_rows: Sequence[str] = ()) -> List[str]:
    """Every variant row, N-major (all rows at the smallest N first)."""
    bases = list(base_rows) or [r for r, _ in BASE_ROWS]
    return [variant(r, n) for n in counts for r in bases]


def mask_counts(scale: str, given: Sequence[str] = ()) -> Tuple[int, ...]:
    """The N of the curve: ``given`` (a flag's strings) or the scale's default."""
    if not given:
        return MASK_COUNTS[scale]
    try:
        counts = tuple(sorted({int(v) for v in given}))
    except ValueError as err:
        raise ConfigError(f"--mask_counts={','.join(given)}: expected integers like "
                          "10,30,100") from err
    if counts[0] < 1:
        raise ConfigError(f"--mask_counts: every size must be >= 1, got {counts[0]}")
    return counts


def selected_rows(names: Sequence[str]) -> List[str]:
    """``--rows`` of this suite: row names, or ``core`` for ``CORE_ROWS``; [] = all."""
    bases = [r for r, _ in BASE_ROWS]
    rows: List[str] = []
    for name in names:
        for row in (CORE_ROWS if name == "core" else (name,)):
            if row not in rows:
                rows.append(row)
    unknown = [r for r in rows if r not in bases]
    if unknown:
        raise ConfigError(f"--rows: {', '.join(unknown)} not in suite {NAME}; its rows: "
                          f"{', '.join(bases)} (or core: {', '.join(CORE_ROWS)})")
    return rows


def synthetic_source(data_dir: str, scale: str, counts: Sequence[int],
                     graded_images: Optional[int] = None):
    """Generate (or reuse) the suite's synthetic set: ``graded_images`` graded training
    images (default ``GRADED_IMAGES``), a mask pool of the scale's largest default N (or
    the largest of ``counts`` if that is bigger), and the validation sets of
    ``VAL_IMAGES``. It lives in ``<data_dir>_data_efficiency`` so it never replaces the
    other suites' set.

    The pool does not shrink with ``counts`` on purpose: the subset of N masks is drawn
    from the pool in a fixed order, so a run of only ``--mask_counts=10,30`` must see the
    same pool (and hence the same 10 and 30 images) as the full suite, and must not
    regenerate the set under stages that have already trained on it."""

    graded = graded_images or GRADED_IMAGES[scale]
    pool = max(max(counts), max(MASK_COUNTS[scale]))
    if graded < 10 * pool:
        raise ConfigError(f"--synthetic_images={graded}: the grade-rich regime needs at least "
                          f"10 x the mask pool of {pool} images ({10 * pool})")
    graded_val, masks_val = VAL_IMAGES[scale]
    root = os.path.abspath(data_dir).rstrip(os.sep) + f"_{NAME}"
    d = data_config(scale)
    manifest = ensure_dataset(root, num_graded_train=graded, num_graded_val=graded_val,
                              num_masks_train=pool, num_masks_val=masks_val,
                              image_size=d.resize_size, seed=d.seed)
    return DataSource("eyepacs", os.path.join(root, "graded_train"),
                      os.path.join(root, "graded_val"), "generic",
                      os.path.join(root, "lesions_train"), os.path.join(root, "lesions_val"),
                      description=f"synthetic fundus set in {root}",
                      counts=manifest.get("counts"))


def check_mask_set(masks_train: str, masks_format: str, counts: Sequence[int],
                   class_names: Sequence[str]) -> None:
    """Fail before any training when the mask set has fewer images than the largest N."""

    if masks_format == "tfrecord":
        raise ConfigError("the data-efficiency suite chooses mask subsets from a file list; "
                          "use a folder format, not tfrecord")
    have = len(datasets.load_masks(masks_format, masks_train, class_names, strict=False))
    if have < max(counts):
        raise ConfigError(f"{masks_train} has {have} mask images; --mask_counts asks for up "
                          f"to {max(counts)}")

