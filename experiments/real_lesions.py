"""The real-data suite: lesion segmentation and grading on public fundus photos, at four
working set-ups, every row against the segmenter alone over seeds.

Its rows, set-ups and the variants they make; its data: ``real_lesions_data``, its
report: ``real_lesions_report``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from coopseg.config import ConfigError, scaled_warmup

NAME = "real_lesions"
REFERENCE_ROW = "jointseg_seg_only"
BASE_ROWS: Tuple[Tuple[str, str], ...] = (
    (REFERENCE_ROW, "segmenter alone (seg_only)"),
    ("ablation_lr_ratio_30", "JointSeg, paper recipe (LR ratio 30)"),
    ("ablation_lr_ratio_0_3", "JointSeg, classifier LR x0.3"),
    ("unet_random_init", "Inception-UNet, random init"),
    ("jointseg_two_step", "two-step (grader first)"),
)
LABELS: Dict[str, str] = dict(BASE_ROWS)
# ``--rows=core`` (``rows``): the segmenter alone and the two cooperation recipes.
CORE_ROWS: Tuple[str, ...] = (REFERENCE_ROW, "ablation_lr_ratio_30", "ablation_lr_ratio_0_3")
# The four public sets, each in a sub-folder of ``--real_data`` (docs/real_data.md).
SUBFOLDERS = {"diaretdb1": "diaretdb1", "heimed": "heimed", "aptos": "aptos",
              "eyepacs": "eyepacs"}


@dataclass(frozen=True)
class SetUp:
    """How the segmenter sees the photos: whole images at ``input_size``, or patches of
    ``input_size`` cut from images held at ``working_size`` and segmented whole by tiles.
    ``steps_factor`` multiplies the scale's step budget: the patch set-up takes
    (working / input)^2 times the steps, so each image is seen as often as whole."""

    name: str
    label: str
    input_size: int
    working_size: int = 0
    steps_factor: int = 1


def setups(scale: str) -> Tuple[SetUp, ...]:
    """The set-ups at ``scale`` (``tiny``: test sizes): whole images at a low and a high
    resolution, and patches of the high one at equal passes and at equal steps."""
    low, high = (64, 128) if scale == "tiny" else (256, 512)
    factor = (high // low) ** 2
    return (SetUp(f"whole{low}", f"whole images at {low} px", low),
            SetUp(f"whole{high}", f"whole images at {high} px (equal steps, {factor}x pixels)",
                  high),
            SetUp(f"patches{low}of{high}", f"{low}-px patches of {high}-px images, whole "
                  f"image by tiles ({factor}x steps: equal passes)", low, high, factor),
            SetUp(f"patches{low}of{high}_steps", f"the same patches at equal steps (each "
                  f"pixel seen 1/{factor} as often)", low, high, 1))


# Steps of a whole-image run per scale; the patch set-up multiplies them.
# ``small``: 600 steps at batch 4 (about 12 passes over the 197 mask images); with the
# core rows three seeds take an estimated 4 hours on 2 cores (step times measured on
# synthetic photos of the same sizes; docs/experiments.md).
STEPS: Dict[str, int] = {"paper": 20000, "small": 600, "tiny": 4}
_VARIANT = re.compile(r"^(?P<base>\w+?)__real_(?P<setup>\w+)$")


def variant(row: str, setup: str) -> str:
    """The name of ``row`` at ``setup``."""
    return f"{row}__real_{setup}"


def split_variant(row: str) -> Tuple[str, Optional[str]]:
    """``"jointseg__real_whole256"`` -> ``("jointseg", "whole256")``; else ``(row, None)``."""
    match = _VARIANT.match(row)
    return (match["base"], match["setup"]) if match else (row, None)


def setup_named(name: str, scale: str) -> SetUp:
    found = {s.name: s for s in setups(scale)}
    if name not in found:
        raise ConfigError(f"set-up {name!r} is not one of {NAME}'s at {scale}: {sorted(found)}")
    return found[name]


def apply_variant(stages: List, setup: SetUp, scale: str) -> None:
    """Point the row's segmenting stages at the set-up: input and working size, steps.

    A grader-only stage (clf_only, the two-step's first) keeps the scale's input size
    and steps, so every set-up and row of a seed shares it (trained once). The classes
    come with the suite's data (``real_lesions_data.prepare``).
    """
    for stage in stages:
        c = stage.config
        c.data.cache = True  # full-size photos decode slowly; the cache holds them resized
        if not c.train.trains_segmenter:
            continue
        c.model.input_size = setup.input_size
        c.data.resize_size = setup.input_size + setup.input_size // 8
        c.data.working_size = setup.working_size
        steps = STEPS[scale] * setup.steps_factor
        tc = c.train
        for agent in (tc.seg, tc.clf):
            agent.warmup_steps = scaled_warmup(agent.warmup_steps, steps, tc.steps)
        tc.steps = steps
        c.run.eval_every = max(1, steps // 4)
        c.run.checkpoint_every = c.run.eval_every


def rows(names: Sequence[str], scale: str, setup_names: Sequence[str] = ()) -> List[str]:
    """The variant rows ``--rows=names`` trains, set-up major. [] = every row at every
    set-up; ``core`` = the segmenter alone at every set-up (what resolution buys) and
    the two JointSeg recipes at the first set-up only (whether cooperation helps), which
    keeps three seeds within a few hours on 2 cores. The reference row always runs at
    every chosen set-up: every verdict is relative to it."""
    chosen = [setup_named(n, scale) for n in setup_names] or list(setups(scale))
    bases = [r for r, _ in BASE_ROWS]
    wanted: Dict[str, List[SetUp]] = {REFERENCE_ROW: chosen}
    for name in names or bases:
        if name == "core":
            for row in CORE_ROWS:
                wanted.setdefault(row, chosen[:1])
        elif name not in bases:
            raise ConfigError(f"--rows: {name} not in suite {NAME}; its rows: "
                              f"{', '.join(bases)} (or core: {', '.join(CORE_ROWS)})")
        else:
            wanted[name] = chosen
    return [variant(row, s.name) for s in chosen for row in bases
            if s in wanted.get(row, [])]


def base_rows(variants: Sequence[str]) -> List[str]:
    """The rows among ``variants``, in table order."""
    present = {split_variant(v)[0] for v in variants}
    return [r for r, _ in BASE_ROWS if r in present]
