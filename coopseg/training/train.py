"""``train()``: build a method's models, restore or initialise them, train, evaluate and
export. The command line (``coopseg-train``), the experiment runner and the tests all call
this one function."""
from __future__ import annotations

import contextlib
import os
from typing import Callable, Optional

from absl import logging

from coopseg.config import ExperimentConfig
from coopseg.runs.lock import run_directory_lock
from coopseg.serving.export import export_saved_model
from coopseg.training.examples import require_paths
from coopseg.training.inputs import validation_gaps
from coopseg.training.loop import CooperativeTrainer, summarize
from coopseg.training.precision import use_precision
from coopseg.training.reproducibility import reproducible_run
from coopseg.training.strategy import is_chief, make_strategy
from coopseg.training.tasks import task_for
from coopseg.utils.atomic_write import write_json_atomically
from data_pipelines.decode import DecodeReport


def train(config: ExperimentConfig, export: bool = True, strategy=None,
          prepare_data: Optional[Callable[[ExperimentConfig], None]] = None) -> dict:
    """Build, restore or initialise, train, evaluate, export. Returns a summary dict.

    ``train.seed`` seeds weight initialisation, data order and augmentation;
    ``run.deterministic`` turns on TensorFlow's op determinism for the run
    (``training/reproducibility.py``). ``train.mixed_precision`` is the global Keras
    policy while the models are built, trained and exported, and the previous policy is
    restored afterwards (even on error). ``strategy`` defaults to
    ``make_strategy(config.run.strategy)``, made here first thing: a multi-worker
    strategy must exist before TensorFlow runs any op. The system, the trainer and the
    restore are built inside its scope. Every worker runs all of it; only the chief
    writes ``metrics.json``, checkpoints, logs and the export into ``model_dir`` (the
    others write to a temporary directory, deleted at the end), and only the chief
    holds ``model_dir``'s lock, taken here and nowhere else: a second process training
    into it is refused (``coopseg/runs/lock.py``). ``prepare_data`` (e.g. generating the
    synthetic set) runs under the lock, after the data paths it does not set are checked.
    """
    strategy = strategy or make_strategy(config.run.strategy)
    require_data_paths(config)
    with model_dir_lock(config, strategy), use_precision(config), reproducible_run(config):
        if prepare_data is not None:
            prepare_data(config)
        return _train(config, export, strategy)


def model_dir_lock(config: ExperimentConfig, strategy):
    """The run directory's lock on the chief; nothing on other workers."""
    if not is_chief(strategy):
        return contextlib.nullcontext()
    return run_directory_lock(config.run.model_dir)


def require_data_paths(config: ExperimentConfig) -> None:
    """ConfigError naming every data path the config sets that does not exist: checked
    before any model is built or run directory written."""
    require_paths(config, ("graded_train", "graded_val", "masks_train", "masks_val"))


def _train(config, export: bool, strategy) -> dict:
    replicas = strategy.num_replicas_in_sync
    logging.info("Creating model %s (%s, policy %s) under %s with %d replica(s)...",
                 config.method, config.name, config.train.mixed_precision or "float32",
                 type(strategy).__name__, replicas)
    if replicas > 1 and not config.model.sync_batch_norm:
        logging.warning("%d replicas with per-replica BatchNorm statistics: not the same as "
                        "one device on the global batch (--sync_batch_norm "
                        "makes it so)", replicas)
    task = task_for(config)
    with strategy.scope():
        system = task.build_system(config)
        trainer = CooperativeTrainer(config, system, strategy)
        start = trainer.restore_or_initialize(task.init_fn(config, system))
    try:
        report = DecodeReport()
        inputs = task.build_inputs(config, start_step=start, report=report)
        gaps = validation_gaps(config, inputs)
        for reason in gaps.values():
            logging.warning("%s (its metrics stay empty; give a held-out set to see them)",
                            reason)
        if start >= config.train.steps:
            logging.info("Already trained to step %d: evaluating only", start)
            metrics = trainer.validate(inputs)
        else:
            metrics = trainer.fit(inputs)
        out = {"experiment": config.name, "method": config.method, "mode": config.train.mode,
               "steps": config.train.steps, "metrics": metrics,
               "skipped_images": report.bad_files, "not_validated": gaps}
        out_dir = trainer.output_dir  # model_dir, except on non-chief workers
        os.makedirs(out_dir, exist_ok=True)
        write_json_atomically(os.path.join(out_dir, "metrics.json"), out)
        if export:  # every worker saves (it reads distributed variables); the chief's stays
            path = export_saved_model(system, config, os.path.join(out_dir, "export"))
            if trainer.is_chief:
                out["export"] = path
    finally:
        trainer.close()
    out["summary"] = summarize(metrics)
    out["is_chief"] = trainer.is_chief
    return out
