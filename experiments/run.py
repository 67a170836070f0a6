"""Run the paper's tables and our ablations, and write results beside the paper's numbers.

    python -m experiments.run --suite=table1 --scale=small
    python -m experiments.run --suite=all --scale=small --seeds=0,1,2

Every suite, real-data runs, the run layout and resuming: docs/experiments.md.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from absl import app, flags

from coopseg.config import LESION_CLASSES, ConfigError
from coopseg.utils.console import run_program
from data_pipelines.datasets import (GRADED_FORMATS, MASK_FORMATS, canonical_graded_format,
                                     run_class_names)
from data_pipelines.records import DataError
from data_pipelines.synthetic import use_synthetic_data
from experiments import data_efficiency as de
from experiments import real_lesions as rl
from experiments.data_source import DataSource
from experiments.registry import SCALES
from experiments.scales import experiment
from experiments.suites import Suite, claim_rows, get_suites, suite_names

if TYPE_CHECKING:  # the runner loads TensorFlow: imported where a suite runs
    from experiments.runner import Runner


def synthetic_data(data_dir: str, scale: str, graded_images: Optional[int] = None) -> DataSource:
    """Generate (or reuse) the synthetic fundus set for ``scale`` in ``data_dir``."""

    base = experiment(scale)
    manifest = use_synthetic_data(base, os.path.abspath(data_dir), scale, graded_images)
    d = base.data
    return DataSource(d.graded_format, d.graded_train, d.graded_val, d.masks_format,
                      d.masks_train, d.masks_val,
                      description=f"synthetic fundus set in {os.path.abspath(data_dir)}",
                      counts=manifest.get("counts"))


def real_data(graded_format: str, graded_train: str, graded_val: str, masks_format: str,
              masks_train: str, masks_val: str, *, needs_graded: bool = True,
              class_names: Sequence[str] = ()) -> DataSource:
    """A dataset on disk. Suites with a JointSeg row need all four sets; mask-only
    suites (DecoupledNet's) need the two mask sets. ``class_names`` (background first)
    replaces the configs' lesion classes; a VOC mask set defaults to VOC's 21."""
    given = {"masks_train": masks_train, "masks_val": masks_val}
    if needs_graded:
        given = {"graded_train": graded_train, "graded_val": graded_val, **given}
    missing = [f"--{k}" for k, v in given.items() if not v]
    if missing:
        need = ("--graded_train, --graded_val, --masks_train, --masks_val (JointSeg rows use "
                "both sets)" if needs_graded else "--masks_train, --masks_val")
        raise ConfigError(f"real data needs all of {need}; missing " + ", ".join(missing))
    for key, path in given.items():
        if not os.path.exists(path):
            raise ConfigError(f"--{key}={path}: no such file or directory")
    paths = {k: os.path.abspath(v) if v else "" for k, v in
             {"graded_train": graded_train, "graded_val": graded_val, **given}.items()}
    if not class_names:
        class_names = run_class_names(masks_format) or ()
    if class_names and len(class_names) < 2:
        raise ConfigError(f"--class_names={','.join(class_names)}: need background plus at "
                          "least one class")
    graded = f"{graded_format} graded set, " if paths["graded_train"] else ""
    return DataSource(graded_format, paths["graded_train"], paths["graded_val"], masks_format,
                      paths["masks_train"], paths["masks_val"],
                      description=f"{graded}{masks_format} mask set {paths['masks_train']}",
                      class_names=tuple(class_names))


# ----------------------------------------------------------------------------- suites
def run_suite(suite: Suite, runner: "Runner", rows: Optional[Sequence[str]] = None,
              train: bool = True) -> dict:
    """Train the suite's rows (``rows``: only these), then write its results files
    (``train=False``: only write them, from the stages that have finished)."""
    from experiments import results as results_lib
    selected = list(suite.rows) if not rows else [r for r in suite.rows if r in rows]
    trained = {}
    for i, row in enumerate(selected, 1):
        trained[row] = runner.row(row, train=train,
                                  progress=f"[{suite.name} {i}/{len(selected)}] ")
    # Rows not selected, and rows of other suites the claims compare, are reported
    # when they already finished in this --out; they are never trained here.
    others = [r for r in dict.fromkeys(suite.rows + claim_rows(suite)) if r not in trained]
    loaded = {r: runner.row(r, train=False) for r in others}
    context = {"scale": runner.scale, "seeds": runner.seeds, "steps_override": runner.steps,
               "out": runner.out, "data": runner.data.to_dict()}
    result = results_lib.suite_results(suite, {**trained, **loaded}, context)
    paths = results_lib.write_results(suite, result, os.path.join(runner.out, suite.name))
    runner.log(f"[{suite.name}] results: {paths[1]}")
    return result


def run_suites(suite: str, runner: "Runner", rows: Optional[Sequence[str]] = None,
               train: bool = True) -> Dict[str, dict]:
    """Run ``suite`` (or every suite for ``all``); returns suite name -> results."""
    suites = get_suites(suite)
    if rows:
        known = {r for s in suites for r in s.rows}
        unknown = [r for r in rows if r not in known]
        if unknown:
            raise ConfigError(f"--rows: {', '.join(unknown)} not in suite {suite!r}; its rows: "
                              f"{', '.join(sorted(known))}")
    return {s.name: run_suite(s, runner, rows, train) for s in suites}


# ----------------------------------------------------------------------------- CLI
FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("suite", None, "Which suite to run: "
                        f"{' | '.join(suite_names() + (de.NAME, rl.NAME))}.")
    flags.DEFINE_enum("scale", "small", SCALES, "Size of every row: paper | small | tiny.")
    flags.DEFINE_string("out", "runs/experiments", "Where rows train and results are written.")
    flags.DEFINE_list("seeds", ["0"], "Seeds; several give mean ± std over seeds.")
    flags.DEFINE_integer("steps", None, "Override the step budget of every stage of every "
                         "row (LR warm-up is scaled with it).")
    flags.DEFINE_list("rows", [], "Only train these rows of the suite (others are reported "
                      "if they already finished); data_efficiency and real_lesions also take "
                      "'core'.")
    flags.DEFINE_bool("rerun", False, "Retrain the selected rows from scratch.")
    flags.DEFINE_bool("report_only", False, "Train nothing: write the results of the stages "
                      "that have finished (e.g. while another process is still training).")
    flags.DEFINE_bool("deterministic", False, "TensorFlow op determinism in every stage "
                      "(bit-identical reruns on any device; ~7 % slower on a CPU). A "
                      "seeded CPU run repeats exactly without it too.")
    flags.DEFINE_bool("export", False, "Export a SavedModel of each stage.")
    flags.DEFINE_string("data_dir", "data/synthetic", "Synthetic fundus set (generated or "
                        "reused) when no --graded_train/--masks_train is given.")
    flags.DEFINE_integer("synthetic_images", None, "Graded training images to generate "
                         "(the other splits scale with it); default: the scale's size "
                         f"(data_efficiency: {de.GRADED_IMAGES['small']} at small).")
    flags.DEFINE_list("mask_counts", [], "data_efficiency: the mask-training subset sizes N "
                      f"(default at small: {','.join(map(str, de.MASK_COUNTS['small']))}).")
    flags.DEFINE_string("real_data", None, f"{rl.NAME}: the folder holding the public sets "
                        f"({', '.join(f'{v}/' for v in rl.SUBFOLDERS.values())}; "
                        "docs/real_data.md).")
    flags.DEFINE_list("setups", [], f"{rl.NAME}: only these working set-ups (default: all; "
                      f"at small: {', '.join(s.name for s in rl.setups('small'))}).")
    flags.DEFINE_string("graded_format", "eyepacs", GRADED_FORMATS)
    flags.DEFINE_string("graded_train", None, "Graded (classification) training data.")
    flags.DEFINE_string("graded_val", None, "Graded validation data.")
    flags.DEFINE_string("masks_format", "generic", MASK_FORMATS)
    flags.DEFINE_string("masks_train", None, "Mask-annotated training data.")
    flags.DEFINE_string("masks_val", None, "Mask-annotated validation data (for VOC: the "
                        "split file, e.g. VOC2012/ImageSets/Segmentation/val.txt).")
    flags.DEFINE_list("class_names", [], "Classes of the mask set, background first, when "
                      "they are not the fundus lesions (default for --masks_format=voc: VOC's "
                      "21).")


def _seeds(values: Sequence[str]) -> List[int]:
    try:
        return [int(v) for v in values]
    except ValueError as err:
        raise ConfigError(f"--seeds={','.join(values)}: expected integers like 0,1,2") from err


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    from experiments.runner import Runner
    try:
        if FLAGS.suite == de.NAME:
            _run_data_efficiency()
            return
        if FLAGS.suite == rl.NAME:
            _run_real_lesions()
            return
        if not FLAGS.suite:
            raise ConfigError("--suite is required; choose one of: "
                              f"{', '.join(suite_names() + (de.NAME, rl.NAME))}")
        suites = get_suites(FLAGS.suite)  # fail on a bad name before generating any data
        if FLAGS.graded_train or FLAGS.masks_train or FLAGS.graded_val or FLAGS.masks_val:
            data = real_data(canonical_graded_format(FLAGS.graded_format), FLAGS.graded_train, FLAGS.graded_val,
                             FLAGS.masks_format, FLAGS.masks_train, FLAGS.masks_val,
                             needs_graded=any(s.needs_graded for s in suites),
                             class_names=FLAGS.class_names)
        else:
            data = synthetic_data(FLAGS.data_dir, FLAGS.scale, FLAGS.synthetic_images)
        runner = Runner(FLAGS.out, FLAGS.scale, data, _seeds(FLAGS.seeds), FLAGS.steps,
                        FLAGS.rerun, FLAGS.export, deterministic=FLAGS.deterministic)
        run_suites(FLAGS.suite, runner, FLAGS.rows, train=not FLAGS.report_only)
    except (ConfigError, DataError) as err:
        sys.exit(f"experiments.run: error: {err}")


def _run_data_efficiency() -> None:
    from experiments import learning_curve
    from experiments.runner import Runner
    counts = de.mask_counts(FLAGS.scale, FLAGS.mask_counts)
    rows = de.selected_rows(FLAGS.rows)
    if FLAGS.graded_train or FLAGS.masks_train or FLAGS.graded_val or FLAGS.masks_val:
        data = real_data(canonical_graded_format(FLAGS.graded_format), FLAGS.graded_train, FLAGS.graded_val,
                         FLAGS.masks_format, FLAGS.masks_train, FLAGS.masks_val,
                         class_names=FLAGS.class_names)
        de.check_mask_set(data.masks_train, data.masks_format, counts,
                          data.class_names or LESION_CLASSES)
    else:
        data = de.synthetic_source(FLAGS.data_dir, FLAGS.scale, counts, FLAGS.synthetic_images)
    runner = Runner(FLAGS.out, FLAGS.scale, data, _seeds(FLAGS.seeds), FLAGS.steps,
                    FLAGS.rerun, FLAGS.export, deterministic=FLAGS.deterministic, report=True)
    learning_curve.run(runner, counts, rows, train=not FLAGS.report_only)


def _run_real_lesions() -> None:
    from experiments import real_lesions_data, real_lesions_report
    from experiments.runner import Runner
    if not FLAGS.real_data:
        raise ConfigError(f"--suite={rl.NAME} needs --real_data=DIR, the folder holding "
                          f"{', '.join(f'{v}/' for v in rl.SUBFOLDERS.values())} "
                          "(docs/real_data.md)")
    rl.rows(FLAGS.rows, FLAGS.scale, FLAGS.setups)  # fail on a bad name before any data
    data = real_lesions_data.prepare(os.path.expanduser(FLAGS.real_data), FLAGS.out)
    runner = Runner(FLAGS.out, FLAGS.scale, data, _seeds(FLAGS.seeds), FLAGS.steps,
                    FLAGS.rerun, FLAGS.export, deterministic=FLAGS.deterministic, report=True)
    command = "python -m experiments.run " + " ".join(sys.argv[1:])
    real_lesions_report.run(runner, FLAGS.rows, FLAGS.setups, train=not FLAGS.report_only,
                            command=command)


if __name__ == "__main__":
    _define_flags()
    run_program(main, __name__)
