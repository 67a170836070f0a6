"""coopseg-train: train an experiment; with no flags, the JointSeg demo on synthetic data.

    coopseg-train                                  # demo: synthetic fundus set, CPU minutes
    coopseg-train --experiment=jointseg --scale=paper \\
        --graded_train=/data/eyepacs --masks_train=/data/lesions/train --masks_val=...
    coopseg-train --flagfile=run.flags              # absl flag files work too

Re-running with the same --model_dir resumes from the last checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import os

from absl import app, flags, logging

from coopseg.console import start_program

from coopseg.cli.flags import config_from_flags, define_experiment_flags

FLAGS = flags.FLAGS

SYNTHETIC_COUNTS = {"paper": (4000, 1000, 800, 200), "small": (640, 160, 192, 64),
                    "tiny": (48, 16, 16, 8)}


def _define_flags() -> None:
    define_experiment_flags()
    flags.DEFINE_string("data_dir", "data/synthetic",
                        "Where the synthetic fundus set is generated (or reused) when no "
                        "--graded_train/--masks_train is given.")
    flags.DEFINE_integer("synthetic_images", None,
                         "Graded training images to generate (others scale with it).")
    flags.DEFINE_bool("export", True, "Export a SavedModel to <model_dir>/export at the end.")


def use_synthetic_data(config, data_dir: str, scale: str, graded_train: int = None) -> dict:
    """Generate (or reuse) the embedded synthetic set and point the config at it."""
    from data_pipelines.synthetic import ensure_dataset
    gt, gv, mt, mv = SYNTHETIC_COUNTS[scale]
    if graded_train:
        factor = graded_train / gt
        gt, gv, mt, mv = graded_train, max(8, int(gv * factor)), max(8, int(mt * factor)), max(4, int(mv * factor))
    manifest = ensure_dataset(data_dir, num_graded_train=gt, num_graded_val=gv,
                              num_masks_train=mt, num_masks_val=mv,
                              image_size=config.data.resize_size, seed=config.data.seed)
    d = config.data
    d.graded_format, d.masks_format = "eyepacs", "generic"
    d.graded_train = os.path.join(data_dir, "graded_train")
    d.graded_val = os.path.join(data_dir, "graded_val")
    d.masks_train = os.path.join(data_dir, "lesions_train")
    d.masks_val = os.path.join(data_dir, "lesions_val")
    return manifest


def train(config, export: bool = True, strategy=None) -> dict:
    """Build, restore or initialise, train, evaluate, export. Returns a summary dict.

    ``train.seed`` seeds weight initialisation, data order and augmentation;
    ``train.deterministic`` turns on TensorFlow's op determinism for the run
    (``training/reproducibility.py``). ``train.mixed_precision`` is the global Keras
    policy while the models are built, trained and exported, and the previous policy is
    restored afterwards (even on error). ``strategy`` defaults to
    ``make_strategy(config.train.strategy)``; a multi-worker strategy must be made
    before TensorFlow runs any op (``main`` does so). The system, the trainer and the
    restore are built inside its scope. Every worker runs all of it; only the chief
    writes ``metrics.json``, checkpoints, logs and the export into ``model_dir`` (the
    others write to a temporary directory, deleted at the end), and only the chief
    holds ``model_dir``'s lock: a second process training into it is refused
    (``training/run_lock.py``).
    """
    from coopseg.training.precision import use_precision
    from coopseg.training.reproducibility import reproducible_run
    from coopseg.training.strategy import make_strategy

    strategy = strategy or make_strategy(config.train.strategy)
    with _model_dir_lock(config, strategy), use_precision(config), reproducible_run(config):
        return _train(config, export, strategy)


def _model_dir_lock(config, strategy):
    """The run directory's lock on the chief; nothing on other workers."""
    from coopseg.training.run_lock import run_directory_lock
    from coopseg.training.strategy import is_chief

    if not is_chief(strategy):
        return contextlib.nullcontext()
    return run_directory_lock(config.train.model_dir)


def _train(config, export: bool, strategy) -> dict:
    from coopseg.export import export_saved_model
    from coopseg.models.registry import build_system
    from coopseg.training.init import encoder_init_fn
    from coopseg.training.inputs import build_inputs
    from coopseg.training.loop import CooperativeTrainer, summarize
    from data_pipelines.decode import DecodeReport

    replicas = strategy.num_replicas_in_sync
    logging.info("Creating model %s (%s, policy %s) under %s with %d replica(s)...",
                 config.method, config.name, config.train.mixed_precision or "float32",
                 type(strategy).__name__, replicas)
    if replicas > 1 and not config.model.sync_batch_norm:
        logging.warning("%d replicas with per-replica BatchNorm statistics: not the same as "
                        "one device on the global batch (--sync_batch_norm "
                        "makes it so)", replicas)
    with strategy.scope():
        system = build_system(config)
        trainer = CooperativeTrainer(config, system, strategy)
        start = trainer.restore_or_initialize(encoder_init_fn(config, system))
    try:
        report = DecodeReport()
        inputs = (system.build_inputs or build_inputs)(config, start_step=start, report=report)
        if start >= config.train.steps:
            logging.info("Already trained to step %d: evaluating only", start)
            metrics = trainer.validate(inputs)
        else:
            metrics = trainer.fit(inputs)
        out = {"experiment": config.name, "method": config.method, "mode": config.train.mode,
               "steps": config.train.steps, "metrics": metrics,
               "skipped_images": report.bad_files}
        out_dir = trainer.output_dir  # model_dir, except on non-chief workers
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "metrics.json"), "w") as f:
            json.dump(out, f, indent=2)
        if export:  # every worker saves (it reads distributed variables); the chief's stays
            path = export_saved_model(system, config, os.path.join(out_dir, "export"))
            if trainer.is_chief:
                out["export"] = path
    finally:
        trainer.close()
    out["summary"] = summarize(metrics)
    out["is_chief"] = trainer.is_chief
    return out


def _print_result(out: dict, model_dir: str) -> None:
    seg = out["metrics"].get("segmentation", {})
    lines = [f"\nDone: {out['experiment']} ({out['method']}, {out['mode']}, {out['steps']} steps)",
             f"  validation: {out['summary']}"]
    if seg.get("iou"):
        per_class = ", ".join(f"{k} {100 * v:.1f}" for k, v in seg["iou"].items() if v is not None)
        lines.append(f"  per-class IoU: {per_class}")
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


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coopseg.cli.errors import exit_now, exit_on_wrapped_data_error
    from coopseg.config import ConfigError
    from coopseg.training.loop import TrainingDiverged
    from data_pipelines.records import DataError
    import tensorflow as tf
    from coopseg.training.strategy import make_strategy
    try:
        config = config_from_flags()
        # First: a multi-worker strategy must exist before TensorFlow runs any op.
        strategy = make_strategy(config.train.strategy)
        # Then the run directory's lock, so a second run on it stops before any work.
        with _model_dir_lock(config, strategy):
            d = config.data
            if not (d.graded_train or d.masks_train):
                logging.info("No data given: using the synthetic fundus set in %s",
                             FLAGS.data_dir)
                use_synthetic_data(config, FLAGS.data_dir, FLAGS.scale, FLAGS.synthetic_images)
            out = train(config, export=FLAGS.export, strategy=strategy)
    except (ConfigError, DataError, TrainingDiverged) as err:
        exit_now("coopseg-train", str(err))
    except tf.errors.InvalidArgumentError as err:
        exit_on_wrapped_data_error("coopseg-train", err)
    _print_result(out, config.train.model_dir)


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    start_program(__name__, "coopseg.cli.flags")
    app.run(main)


if __name__ == "__main__":
    run()
