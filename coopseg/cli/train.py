"""coopseg-train: train an experiment; with no flags, the JointSeg demo on synthetic data.

    coopseg-train                                  # demo: synthetic fundus set, CPU minutes
    coopseg-train --experiment=jointseg --scale=paper --model_dir=runs/paper \\
        --graded_train=/data/eyepacs --masks_train=/data/lesions/train --masks_val=...
    # the same command again resumes from the last checkpoint in --model_dir
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from coopseg.cli.errors import exit_now, exit_on_wrapped_data_error
from coopseg.cli.flags import config_from_flags, define_experiment_flags, print_config_if_asked
from coopseg.config import ConfigError
from coopseg.utils.console import run_program
from data_pipelines.records import DataError
from data_pipelines.synthetic import use_synthetic_data

FLAGS = flags.FLAGS


def _define_flags() -> None:
    define_experiment_flags()
    flags.DEFINE_string("data_dir", "data/synthetic",
                        "Where the synthetic fundus set is generated (or reused) when no "
                        "--graded_train/--masks_train is given.")
    flags.DEFINE_integer("synthetic_images", None,
                         "Graded training images to generate (others scale with it).")
    flags.DEFINE_bool("export", True, "Export a SavedModel to <model_dir>/export at the end.")


def _print_result(out: dict, model_dir: str) -> None:
    seg = out["metrics"].get("segmentation", {})
    lines = [f"\nDone: {out['experiment']} ({out['method']}, {out['mode']}, {out['steps']} steps)",
             f"  validation: {out['summary']}"]
    if seg.get("iou"):
        per_class = ", ".join(f"{k} {100 * v:.1f}" for k, v in seg["iou"].items() if v is not None)
        lines.append(f"  per-class IoU: {per_class}")
    for agent, reason in sorted(out.get("not_validated", {}).items()):
        lines.append(f"  NOT VALIDATED: {reason}")
    if out["skipped_images"]:
        lines.append(f"  skipped unreadable images: {len(out['skipped_images'])} (see metrics.json)")
    lines += [f"  TensorBoard:  tensorboard --logdir {os.path.join(model_dir, 'logs')}",
              f"  checkpoints:  {os.path.join(model_dir, 'checkpoints')}",
              f"  metrics:      {os.path.join(model_dir, 'metrics.json')}"]
    if out.get("export"):
        lines.append(f"  SavedModel:   {out['export']}")
        lines.append(f"  next:         coopseg-predict --model={out['export']} --input=PHOTOS_DIR  |  "
                     f"coopseg-evaluate --model_dir={model_dir} --report={os.path.join(model_dir, 'report')}")
    if not out.get("is_chief", True):
        lines.append("  (a non-chief worker: the chief wrote the files above)")
    print("\n".join(lines))


def _use_synthetic_data(config) -> None:
    logging.info("No data given: using the synthetic fundus set in %s", FLAGS.data_dir)
    use_synthetic_data(config, FLAGS.data_dir, FLAGS.scale, FLAGS.synthetic_images)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    import tensorflow as tf

    from coopseg.training.loop import TrainingDiverged
    from coopseg.training.train import train
    try:
        config = config_from_flags()
        if print_config_if_asked(config):
            if not (config.data.graded_train or config.data.masks_train):
                print(f"(no data paths given: the run would generate or reuse the synthetic "
                      f"fundus set in {FLAGS.data_dir} and train on it)")
            return
        needs_data = not (config.data.graded_train or config.data.masks_train)
        # Under the run's lock (train() calls it): a second run stops before generating.
        out = train(config, export=FLAGS.export,
                    prepare_data=_use_synthetic_data if needs_data else None)
    except (ConfigError, DataError, TrainingDiverged) as err:
        exit_now("coopseg-train", str(err))
    except tf.errors.InvalidArgumentError as err:
        exit_on_wrapped_data_error("coopseg-train", err)
    _print_result(out, config.run.model_dir)


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    run_program(main, __name__, "coopseg.cli.flags")


if __name__ == "__main__":
    run()
