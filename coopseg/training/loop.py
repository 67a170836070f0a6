"""The loop around the cooperative step: checkpoints, summaries, validation, progress.

``CooperativeTrainer`` resumes a run from its last checkpoint or starts it afresh, saves
only finite states, and under a multi-worker strategy lets only the chief write into
``model_dir`` (docs/run_directories.md, docs/speed.md).
"""
from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional

import tensorflow as tf
from absl import logging

from coopseg.config import ConfigError, ExperimentConfig, to_dict
from coopseg.evaluation.evaluate import evaluate_system
from coopseg.evaluation.visualize import overlay, to_display
from coopseg.models.system import ModelSystem
from coopseg.training.agent_inputs import Inputs
from coopseg.training.agents import make_agent
from coopseg.training.class_weights import (class_weights_from_frequencies,
                                            estimate_class_frequencies, log_weights)
from coopseg.training.cooperation import EncoderGradientPolicy
from coopseg.training.cooperative import CooperativeStep
from coopseg.training.strategy import is_chief, remove_worker_dir, worker_dir
from coopseg.training.tasks import task_for
from coopseg.utils.atomic_write import write_json_atomically
from coopseg.utils.progress import ProgressBar


class TrainingDiverged(RuntimeError):
    """A loss became NaN or Inf; the message names the step and the last good checkpoint."""


class CooperativeTrainer:
    """Trains a ``ModelSystem`` with the agents ``config.train`` asks for
    (``trains_classifier`` / ``trains_segmenter``).

    Under a multi-worker strategy every worker runs this same loop (saves and summaries
    read sync-on-read variables, a collective all must join), but only the chief writes
    into ``model_dir``; the others write to a temporary ``output_dir`` that ``close()``
    deletes. Every worker restores from the chief's ``model_dir/checkpoints`` (a
    filesystem all hosts see). Validation runs unreplicated on each worker's copy of the
    weights (identical after every step), over the whole validation set.
    """

    def __init__(self, config: ExperimentConfig, system: ModelSystem,
                 strategy: Optional[tf.distribute.Strategy] = None):
        """Build agents, step and checkpoint. Under a strategy, build ``system`` inside
        ``strategy.scope()`` too, so every variable is distributed."""
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        tc = config.train
        system.require(tc.trains_classifier, tc.trains_segmenter, tc.mode)
        self.system = system
        self.model_dir = config.run.model_dir
        self.is_chief = is_chief(self.strategy)
        self.output_dir = worker_dir(self.model_dir, self.strategy)
        with self.strategy.scope():  # optimizers and trainer variables are distributed too
            self._build(config, system)
        self._check_batch_split()

    def _check_batch_split(self) -> None:
        """Each agent's batch size is global: every replica must get an equal share."""
        replicas = self.strategy.num_replicas_in_sync
        for agent in self.agents:
            if agent.batch_size % replicas:
                field = "train.seg.batch_size" if agent.name == "seg" else \
                    "train.clf.batch_size (train.seg.batch_size x train.batch_ratio)"
                raise ConfigError(f"{field}={agent.batch_size} is the global batch; with "
                                  f"{replicas} replicas it must be a multiple of {replicas}")

    def _build(self, config: ExperimentConfig, system: ModelSystem) -> None:
        tc = config.train
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.clf_agent = self.seg_agent = None
        # Per-class loss weights live in the checkpoint so a resumed run keeps them;
        # ``fit`` fills them from the training masks before the first step.
        self.class_weights = tf.Variable(tf.ones([config.model.num_seg_classes]),
                                         trainable=False, name="seg_class_weights")
        losses = task_for(config).build_losses(config, self.class_weights)
        if tc.trains_classifier:
            self.clf_agent = make_agent("clf", system.clf_model,
                                        system.clf_model.trainable_variables, tc.clf_agent(),
                                        tc.steps, losses.classifier, tc.mixed_precision)
        if tc.trains_segmenter:
            self.seg_agent = make_agent("seg", system.seg_model,
                                        system.seg_model.trainable_variables, tc.seg,
                                        tc.steps, losses.segmenter, tc.mixed_precision)
        for agent in self.agents:
            # Create slot variables now so a restore fills them immediately (not lazily).
            agent.optimizer.build(agent.variables)
        self.step_fn = CooperativeStep(
            self.clf_agent, self.seg_agent, jit_compile=config.run.jit_compile,
            strategy=self.strategy,
            encoder_policy=EncoderGradientPolicy(tc.cooperation, system.shared_variables))
        trackables = dict(system.parts)
        trackables.update({f"{a.name}_optimizer": a.optimizer for a in self.agents})
        self.checkpoint = tf.train.Checkpoint(step=self.global_step,
                                              seg_class_weights=self.class_weights, **trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.output_dir, "checkpoints"),
            max_to_keep=config.run.keep_checkpoints)

    def close(self) -> None:
        """Delete a non-chief worker's temporary output (no-op on the chief)."""
        remove_worker_dir(self.output_dir, self.model_dir)

    @property
    def agents(self):
        return [a for a in (self.clf_agent, self.seg_agent) if a is not None]

    # -- state -------------------------------------------------------------------------
    def restore_or_initialize(self, init_fn: Optional[Callable[[], None]] = None) -> int:
        """Restore the latest checkpoint, else initialise; returns the step to start from.

        The three cases, each narrated in the log as it happens:
        1. ``model_dir/checkpoints`` has a checkpoint -> restore the global step, every
           model part and both optimizers (their iteration counters drive the LR
           schedules, so the learning rates continue exactly); ``fit`` then continues to
           ``train.steps``.
        2. No checkpoint, ``init_fn`` given -> step 0 from what it loads, e.g. a trained
           classifier's encoder (``train.init_encoder_from``, the paper's two-step
           baseline, Table I).
        3. Otherwise -> fresh random initialisation at step 0.
        """
        # The chief's checkpoints, on every worker (non-chief managers write elsewhere).
        latest = tf.train.latest_checkpoint(os.path.join(self.model_dir, "checkpoints"))
        if latest:
            logging.info("Restoring from %s", latest)
            self._check_checkpoint_parts(latest)
            with self.strategy.scope():
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            # Only finite states are saved, so a restored run starts finite again (the
            # latch is not checkpointed; after a divergence in this process it was False).
            self.step_fn.all_finite.assign(True)
            logging.info("Resumed at step %d (lr %s)", int(self.global_step.numpy()),
                         ", ".join(f"{a.name}={a.learning_rate():.3g}" for a in self.agents))
        elif init_fn is not None:
            init_fn()
        else:
            logging.info("No checkpoint in %s: training from random initialisation",
                         self.manager.directory)
        return int(self.global_step.numpy())

    def _check_checkpoint_parts(self, checkpoint: str) -> None:
        """A checkpoint of a different set of model parts (e.g. written without
        ``model.per_agent_batch_norm`` and resumed with it) would restore partially and
        silently: the missing part would start from its initial values."""
        saved = {name.split("/")[0] for name, _ in tf.train.list_variables(checkpoint)}
        parts = set(self.system.parts)
        known = parts | {"step", "seg_class_weights", "clf_optimizer", "seg_optimizer",
                         "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"}
        missing, extra = sorted(parts - saved), sorted(saved - known)
        if missing or extra:
            raise ConfigError(
                f"{checkpoint} does not hold this model's parts (missing: "
                f"{', '.join(missing) or 'none'}; not in this model: {', '.join(extra) or 'none'})"
                ": it was written with other model settings (e.g. model.per_agent_batch_norm)."
                " Resume with the settings in its config.json, or train into a new --model_dir")

    def save(self) -> str:
        """Checkpoint, unless a loss or any weight (BN statistics included: they can
        overflow while the loss is still finite) is NaN/Inf."""
        if not bool(self.step_fn.all_finite.numpy()):
            raise self._diverged()
        if not self._weights_finite():
            raise self._diverged("a weight (e.g. a BatchNorm moving statistic) became NaN/Inf "
                                 "while the losses were finite")
        # Atomic: TensorFlow writes the data files first and only then swaps the
        # ``checkpoint`` index (write-to-temp + rename), so an interrupted save leaves the
        # previous checkpoint as the latest.
        return self.manager.save(checkpoint_number=int(self.global_step.numpy()))

    def _weights_finite(self) -> bool:
        floats = [v for part in self.system.parts.values() for v in part.weights
                  if v.dtype.is_floating]
        return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in floats]))

    def _diverged(self, what: str = "a loss became NaN/Inf") -> TrainingDiverged:
        return TrainingDiverged(
            f"{what} at or before step {int(self.global_step.numpy())}; "
            f"nothing diverged was saved. Last good checkpoint: "
            f"{self.manager.latest_checkpoint or 'none'}. Lower the learning rate "
            "(train.seg.learning_rate, train.lr_ratio) or check the input data.")

    # -- the loop ------------------------------------------------------------------------
    def fit(self, inputs: Inputs, until_step: Optional[int] = None) -> Dict[str, dict]:
        """Train to ``train.steps`` (or stop early at ``until_step``, checkpointing there,
        as an interrupted run would); returns the last validation metrics."""
        tc, run = self.config.train, self.config.run
        last = min(until_step or tc.steps, tc.steps)
        os.makedirs(self.output_dir, exist_ok=True)
        write_json_atomically(os.path.join(self.output_dir, "config.json"),
                              to_dict(self.config))
        logs = os.path.join(self.output_dir, "logs")
        train_writer = tf.summary.create_file_writer(os.path.join(logs, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(logs, "val"))
        clf_iter = iter(self._distribute(inputs.clf_train)) if self.clf_agent else None
        seg_iter = iter(self._distribute(inputs.seg_train)) if self.seg_agent else None
        start = int(self.global_step.numpy())
        if start == 0 and self.seg_agent is not None and tc.seg_class_weighting != "none":
            self._estimate_class_weights(inputs.seg_train)
        logging.info("Training %s (%s) from step %d to %d", self.config.name, tc.mode, start,
                     tc.steps)
        bar = ProgressBar(tc.steps, desc=self.config.name, unit="step", start=start)
        metrics: Dict[str, dict] = {}
        t_last, step_last = time.perf_counter(), start
        profiler = StepProfiler(run.profile_range(), os.path.join(self.model_dir, "logs", "profile"))
        try:
            for step in range(start + 1, last + 1):
                profiler.before(step)
                # A step marker: the profiler's trace viewer and step-time graph use it.
                with tf.profiler.experimental.Trace("train", step_num=step, _r=1):
                    clf_batch = next(clf_iter) if clf_iter else None
                    seg_batch = next(seg_iter) if seg_iter else None
                    out = self.step_fn(clf_batch, seg_batch)
                profiler.after(step, out)
                self.global_step.assign(step)
                if step % run.log_every == 0 or step == last:
                    if not bool(self.step_fn.all_finite.numpy()):
                        raise self._diverged()
                    now = time.perf_counter()
                    rate = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    info = self._write_train_summaries(train_writer, step, out, rate)
                    bar.update(step, info)
                if step % run.checkpoint_every == 0 or step == last:
                    self.save()
                if step % run.eval_every == 0 or step == last:
                    metrics = self.validate(inputs, val_writer, step)
        finally:
            profiler.stop()  # a run that ends or fails inside the range still writes it
        bar.close()
        return metrics

    def _distribute(self, dataset: tf.data.Dataset):
        if self.strategy.num_replicas_in_sync == 1:
            return dataset
        # The pipelines batch by the global batch; the strategy splits it per replica.
        return self.strategy.experimental_distribute_dataset(dataset)

    def _estimate_class_weights(self, seg_train: tf.data.Dataset) -> None:
        tc = self.config.train
        freqs = estimate_class_frequencies(seg_train, self.config.model.num_seg_classes)
        weights = class_weights_from_frequencies(freqs, tc.seg_class_weighting,
                                                 tc.seg_class_weight_max)
        log_weights(self.config.data.class_names, freqs, weights)
        self.class_weights.assign(weights.astype("float32"))

    def _write_train_summaries(self, writer, step: int, out: Dict[str, tf.Tensor],
                               steps_per_s: float) -> str:
        values = {k: float(v) for k, v in out.items()}
        with writer.as_default(step=step):
            for k, v in values.items():
                group = "gradients" if k.endswith(("grad_norm", "cosine")) else "loss"
                tf.summary.scalar(f"{group}/{k}", v)
            for agent in self.agents:
                tf.summary.scalar(f"learning_rate/{agent.name}", agent.learning_rate())
            tf.summary.scalar("speed/steps_per_second", steps_per_s)
        return " ".join(f"{k} {v:.4f}" for k, v in values.items() if k.endswith("_loss")
                        and not k.endswith("total_loss"))

    def validate(self, inputs: Inputs, writer=None, step: Optional[int] = None) -> Dict[str, dict]:
        """Evaluate on the validation sets; log scalars and mask overlays to TensorBoard."""
        mc = self.config.model
        metrics = evaluate_system(self.system, inputs.clf_val if self.clf_agent else None,
                                  inputs.seg_val if self.seg_agent else None,
                                  mc.num_grades, self.config.data.class_names,
                                  self.config.train.eval_batches)
        step = int(self.global_step.numpy()) if step is None else step
        logging.info("step %d validation: %s", step, summarize(metrics))
        if writer is not None:
            with writer.as_default(step=step):
                for tag, value in _scalars(metrics):
                    tf.summary.scalar(tag, value)
                if self.seg_agent is not None and inputs.seg_val is not None:
                    self._write_image_summaries(inputs.seg_val)
        return metrics

    def _write_image_summaries(self, seg_val: tf.data.Dataset) -> None:
        n = self.config.run.image_summaries
        if n <= 0:
            return
        images, masks = next(iter(seg_val))
        images, masks = images[:n], masks[:n]
        pred = self.system.predict_classes(images)
        shown = to_display(images)
        k = self.config.model.num_seg_classes
        tf.summary.image("images/input", shown, max_outputs=n)
        tf.summary.image("images/ground_truth", overlay(shown, masks, k), max_outputs=n)
        tf.summary.image("images/prediction", overlay(shown, pred, k), max_outputs=n)


class StepProfiler:
    """TensorBoard profiler trace of the steps in ``steps`` = (start, end), inclusive.

    Starts just before step ``start`` (after its batches are ready would hide the input
    pipeline, which the trace should show), stops once step ``end``'s results exist
    (the step runs asynchronously; reading a loss waits for it). ``None`` does nothing.
    """

    def __init__(self, steps: Optional[tuple], logdir: str):
        self.steps, self.logdir = steps, logdir
        self.active = self.done = False

    def before(self, step: int) -> None:
        # "start <= step", not "==": a run resumed inside the range still profiles the rest.
        if (self.steps is not None and not (self.active or self.done)
                and self.steps[0] <= step <= self.steps[1]):
            logging.info("Profiling steps %d-%d into %s", step, self.steps[1], self.logdir)
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def after(self, step: int, out: Dict[str, tf.Tensor]) -> None:
        if self.active and step >= self.steps[1]:
            for value in out.values():
                value.numpy()
            self.stop()

    def stop(self) -> None:
        if self.active:
            self.active, self.done = False, True
            tf.profiler.experimental.stop()


def _scalars(metrics: dict, prefix: str = ""):
    """(tag, value) for every number in a nested metrics dict; undefined (None) skipped."""
    for key, value in metrics.items():
        tag = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _scalars(value, tag + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield tag, float(value)


def summarize(metrics: Dict[str, dict]) -> str:
    """One line with the headline numbers of an evaluation."""
    parts = []
    seg = metrics.get("segmentation", {})
    clf = metrics.get("classification", {})
    labels = metrics.get("image_labels", {})
    for key in ("miou", "miou_no_background"):
        if seg.get(key) is not None:
            parts.append(f"{key} {100 * seg[key]:.1f}")
    for key in ("top1_accuracy", "top2_accuracy", "binary_accuracy", "quadratic_kappa"):
        if clf.get(key) is not None:
            scale = 1 if key == "quadratic_kappa" else 100
            parts.append(f"{key} {scale * clf[key]:.3g}")
    true_classes = metrics.get("segmentation_true_classes", {})
    if true_classes.get("miou") is not None:
        parts.append(f"miou given true classes {100 * true_classes['miou']:.1f}")
    for key in ("map", "recall", "images_passing_threshold"):
        if labels.get(key) is not None:
            parts.append(f"image-label {key} {100 * labels[key]:.1f}")
    return ", ".join(parts) or "(no validation data)"
