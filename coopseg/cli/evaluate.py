"""coopseg-evaluate: the papers' metrics for a trained run on its (or given) validation data.

    coopseg-evaluate --model_dir=runs/demo
    coopseg-evaluate --model_dir=runs/demo --masks_val=/data/lesions/val --output=val.json
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Run directory written by coopseg-train.")
    flags.DEFINE_string("graded_val", None, "Graded data to evaluate (default: the run's).")
    flags.DEFINE_string("masks_val", None, "Mask data to evaluate (default: the run's).")
    flags.DEFINE_string("output", None, "JSON output (default <model_dir>/evaluation.json).")
    flags.DEFINE_integer("batch_size", 8, "Evaluation batch size.")


def metrics_table(metrics: dict) -> str:
    """The headline numbers as an aligned text table."""
    from coopseg.metrics_report import format_table
    rows = []
    for group, values in metrics.items():
        for key, value in values.items():
            if isinstance(value, dict):
                rows += [{"metric": f"{group}/{key}/{k}", "value": _fmt(v)} for k, v in value.items()]
            elif not isinstance(value, list):
                rows.append({"metric": f"{group}/{key}", "value": _fmt(value)})
    return format_table(rows, ["metric", "value"])


def _fmt(value) -> str:
    if value is None:
        return "undefined"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coopseg.cli.run_dir import load_run
    from coopseg.config import ConfigError
    from coopseg.evaluation import evaluate_system
    from coopseg.training.inputs import build_eval_inputs
    from data_pipelines.records import DataError
    try:
        config, system = load_run(FLAGS.model_dir)
        if FLAGS.graded_val is not None:
            config.data.graded_val = FLAGS.graded_val
        if FLAGS.masks_val is not None:
            config.data.masks_val = FLAGS.masks_val
        inputs = build_eval_inputs(config, batch_size=FLAGS.batch_size)
        metrics = evaluate_system(system, inputs.clf_val, inputs.seg_val,
                                  config.model.num_grades, config.data.class_names)
    except (ConfigError, DataError) as err:
        sys.exit(f"coopseg-evaluate: error: {err}")
    output = FLAGS.output or os.path.join(FLAGS.model_dir, "evaluation.json")
    with open(output, "w") as f:
        json.dump(metrics, f, indent=2)
    print(metrics_table(metrics))
    logging.info("Wrote %s", output)
    print(f"\nwritten: {output}")


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
