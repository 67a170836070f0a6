"""coopseg-evaluate: the papers' metrics for a trained run on its (or given) validation data.

    coopseg-evaluate --model_dir=runs/demo --masks_val=/data/lesions/val --output=val.json
    coopseg-evaluate --model_dir=runs/demo --report=runs/demo/report

``--report DIR``: the full report, also logged to TensorBoard (docs/serving.md).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from coopseg.cli.errors import exit_on_wrapped_data_error
from coopseg.config import ConfigError
from coopseg.utils.atomic_write import write_json_atomically
from coopseg.utils.console import run_program
from data_pipelines.records import DataError

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Run directory written by coopseg-train.")
    flags.DEFINE_string("graded_val", None, "Graded data to evaluate (default: the run's).")
    flags.DEFINE_string("masks_val", None, "Mask data to evaluate (default: the run's).")
    flags.DEFINE_string("output", None, "JSON output (default <model_dir>/evaluation.json).")
    flags.DEFINE_integer("batch_size", 8, "Evaluation batch size.")
    flags.DEFINE_string("report", None, "Write a full report to this directory: metrics.json, "
                        "report.md, PNG figures (PR curves, ROC, confusion matrices, worst/best "
                        "segmentations). Replaces an earlier report there.")
    flags.DEFINE_string("tensorboard_dir", None, "With --report: TensorBoard directory for its "
                        "scalars and figures (default <model_dir>/logs/evaluation).")
    flags.DEFINE_float("referable_threshold", 0.5, "With --report: referable DR is predicted "
                       "when p(grade >= 2) >= this.")
    flags.DEFINE_integer("aupr_bins", None, "With --report: pixel-score bins per lesion for "
                         "AUPR, equal in logit (default: the report's; more bins, tighter to "
                         "an exact sort).")
    flags.DEFINE_integer("grid_images", 4, "With --report: k worst and k best segmentations "
                         "in the image grid (0: no grid).")


def metrics_table(metrics: dict) -> str:
    """The headline numbers as an aligned text table."""
    from coopseg.evaluation.metric_tables import format_metric, format_table
    rows = []
    for group, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, dict):
                rows += [{"metric": f"{group}/{key}/{k}", "value": format_metric(v)} for k, v in value.items()]
            elif not isinstance(value, list):
                rows.append({"metric": f"{group}/{key}", "value": format_metric(value)})
    return format_table(rows, ["metric", "value"])


def write_full_report(config, system, inputs, options) -> None:
    """``--report``: build, write and log the report; print its table and paths."""
    from coopseg.evaluation import report as er
    from coopseg.evaluation import report_output as out
    checkpoint, step = out.checkpoint_step(FLAGS.model_dir)
    report = er.build_report(system, inputs.clf_val, inputs.seg_val, config.model.num_grades,
                             config.data.class_names, options)
    run = {"name": config.name, "method": config.method,
           "model_dir": os.path.abspath(FLAGS.model_dir), "checkpoint": checkpoint,
           "step": step, "graded_val": config.data.graded_val,
           "masks_val": config.data.masks_val}
    try:
        paths = out.write_report(report, FLAGS.report, run=run)
        if FLAGS.output:
            write_json_atomically(FLAGS.output, report.metrics)
            paths.append(FLAGS.output)
    except OSError as err:
        sys.exit(f"coopseg-evaluate: error: cannot write the report: {err}")
    logdir = FLAGS.tensorboard_dir or os.path.join(FLAGS.model_dir, "logs", "evaluation")
    out.log_to_tensorboard(report, logdir, step)
    print(metrics_table(out.headline(report.metrics)))
    for section, reason in report.metrics["unavailable"].items():
        print(f"not reported: {section}: {reason}")
    print("\nwritten:\n" + "\n".join(f"  {p}" for p in paths))
    print(f"TensorBoard (step {step}): {logdir}")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    import tensorflow as tf

    from coopseg.evaluation.evaluate import evaluate_system
    try:
        if FLAGS.report is not None:
            _report_main()
            return
        config, system, inputs = _load()
        metrics = evaluate_system(system, inputs.clf_val, inputs.seg_val,
                                  config.model.num_grades, config.data.class_names,
                                  progress=True)
    except (ConfigError, DataError) as err:
        sys.exit(f"coopseg-evaluate: error: {err}")
    except tf.errors.InvalidArgumentError as err:  # a strict run met an unreadable image
        exit_on_wrapped_data_error("coopseg-evaluate", err)
    output = FLAGS.output or os.path.join(FLAGS.model_dir, "evaluation.json")
    write_json_atomically(output, metrics)
    print(metrics_table(metrics))
    logging.info("Wrote %s", output)
    print(f"\nwritten: {output}")


def _load():
    """The run's config (with --graded_val/--masks_val applied), system and val inputs."""
    from coopseg.runs.run_dir import load_run
    from coopseg.training.inputs import build_eval_inputs
    config, system = load_run(FLAGS.model_dir)
    if FLAGS.graded_val is not None:
        config.data.graded_val = FLAGS.graded_val
    if FLAGS.masks_val is not None:
        config.data.masks_val = FLAGS.masks_val
    return config, system, build_eval_inputs(config, batch_size=FLAGS.batch_size)


def _report_main() -> None:
    from coopseg.evaluation import pixel_ranking as pr
    from coopseg.evaluation.report import ReportOptions
    from coopseg.evaluation.report_output import check_report_dir
    # Check the flags and the target before the (slow) restore and evaluation passes.
    options = ReportOptions(referable_threshold=FLAGS.referable_threshold,
                            aupr_bins=FLAGS.aupr_bins or pr.DEFAULT_BINS,
                            grid_images=FLAGS.grid_images).validate()
    check_report_dir(FLAGS.report)
    config, system, inputs = _load()
    write_full_report(config, system, inputs, options)


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    run_program(main, __name__)


if __name__ == "__main__":
    run()
