"""Train a row's stages into ``<out>/<row>/seed<k>/<stage>/``, resumably.

Every stage is a normal coopseg run directory (checkpoints, TensorBoard logs,
metrics.json) that gets a ``stage.json`` record when it finishes. A stage is identified
by a fingerprint of everything that determines what it learns (its config without
name and paths, plus its predecessor's fingerprint), so a later run can:

1. skip a stage whose record has the same fingerprint (resumable suites; rows shared
   by several suites, e.g. ``jointseg``, train once);
2. continue an interrupted stage from its last checkpoint (``coopseg.training.train.train``
   restores it) when its ``config.json`` has the same fingerprint;
3. reuse a finished stage of another row with the same fingerprint (no retraining);
4. refuse, naming the differing fields, a directory that holds another configuration,
   unless ``rerun`` (then the row's directories are deleted and retrained).

Two-step rows hand the pretrain stage's run directory to the next stage as
``train.init_encoder_from``.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Callable, Dict, List, Optional, Sequence

from absl import logging

from coopseg.config import (ConfigError, CooperationConfig, ExperimentConfig, to_dict,
                            upgrade_legacy_fields)
from coopseg.evaluation.report import ReportOptions, build_report
from coopseg.runs.run_dir import load_run
from coopseg.training.inputs import build_eval_inputs
from coopseg.training.loop import TrainingDiverged
from coopseg.training.train import train
from coopseg.utils.atomic_write import write_json_atomically
from experiments import results as results_lib
from experiments.common import Stage
from experiments.data_source import DataSource
from experiments.registry import SCALES
from experiments.suites import row_stages

STAGE_RECORD = "stage.json"
# Fields that name, place or observe a run but do not change what it learns.
_NOT_FINGERPRINTED = (("name",), ("train", "model_dir"), ("train", "init_encoder_from"),
                      ("train", "profile_steps"))
# Fields added after runs existed, with the value that reproduces the earlier behaviour:
# at that value they are left out of the fingerprint, so finished runs stay valid when
# coopseg gains a config field. Add every new field that changes learning here.
_ADDED_LATER = {("model", "sync_batch_norm"): False, ("model", "vgg_batch_norm"): True,
                ("train", "deterministic"): False, ("train", "backbone_weights"): "",
                ("model", "per_agent_batch_norm"): False, ("data", "masks_train_count"): 0,
                ("train", "cooperation"): to_dict(CooperationConfig())}


def stage_dir(out: str, row: str, seed: int, stage: str) -> str:
    return os.path.join(out, row, f"seed{seed}", stage)


def prepare_stages(row: str, scale: str, data: DataSource, seed: int, out: str,
                   steps: Optional[int] = None, deterministic: bool = False) -> List[Stage]:
    """The row's stages, configured for this suite run: data, seed, step budget, op
    determinism, run directories, and each later stage initialised from its
    predecessor's directory."""
    stages = row_stages(row, scale)
    previous = ""
    for stage in stages:
        c = stage.config
        data.apply(c)
        c.train.seed = seed
        c.train.deterministic = deterministic
        if steps is not None:
            _set_steps(c, steps)
        c.train.model_dir = stage_dir(out, row, seed, stage.name)
        c.train.init_encoder_from = previous
        previous = c.train.model_dir
        c.validate()
    return stages


def _set_steps(config: ExperimentConfig, steps: int) -> None:
    """Change the step budget, scaling LR warm-up with it so the schedule keeps its shape."""
    tc = config.train
    for agent in ("seg", "clf"):
        cfg = getattr(tc, agent)
        warmup = min(steps - 1, round(cfg.warmup_steps * steps / tc.steps))
        setattr(tc, agent, dataclasses.replace(cfg, warmup_steps=warmup))
    tc.steps = steps


def _earlier_forms(d: dict) -> dict:
    """Write fields that were split or retyped the way earlier versions wrote them, so
    a stage recorded then keeps its fingerprint: ``data.color_jitter`` "mild" / "none"
    was ``True`` / ``False``; equal ``data.flip_left_right`` and ``flip_up_down`` were
    one ``data.flip``. (``upgrade_legacy_fields`` is the opposite direction.)"""
    data = d.get("data")
    if not isinstance(data, dict):
        return d
    if data.get("color_jitter") in ("mild", "none"):
        data["color_jitter"] = data["color_jitter"] == "mild"
    if "flip_left_right" in data and data["flip_left_right"] == data.get("flip_up_down"):
        data["flip"] = data.pop("flip_left_right")
        data.pop("flip_up_down")
    return d


def _fingerprint_dict(config_dict: dict) -> dict:
    d = _earlier_forms(upgrade_legacy_fields(config_dict))
    dropped = [(path, None) for path in _NOT_FINGERPRINTED] + list(_ADDED_LATER.items())
    for path, earlier in dropped:
        target = d
        for key in path[:-1]:
            target = target.get(key, {})
        if path in _NOT_FINGERPRINTED or target.get(path[-1], earlier) == earlier:
            target.pop(path[-1], None)
    return d


def fingerprint(config: ExperimentConfig, upstream: str = "") -> str:
    """A hash of everything that determines what a stage learns, including (through
    ``upstream``) the stage it is initialised from."""
    return fingerprint_of_dict(to_dict(config), upstream)


def fingerprint_of_dict(config_dict: dict, upstream: str = "") -> str:
    """``fingerprint`` of a config as a dict (e.g. a run's ``config.json``)."""
    text = json.dumps(_fingerprint_dict(config_dict), sort_keys=True) + upstream
    return hashlib.sha1(text.encode()).hexdigest()


def _config_differences(a: dict, b: dict, prefix: str = "") -> List[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += _config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            diffs.append(f"{prefix}{key}: {va!r} -> {vb!r}")
    return diffs


def _read_json(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); delete it or pass --rerun") from err


def validation_curve(run_dir: str) -> Dict[str, list]:
    """[[step, value], ...] per validation scalar, from the run's TensorBoard logs."""
    import tensorflow as tf

    curve: Dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "logs", "val", "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "scalars":
                    continue  # image summaries share the log
                number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                          else float(value.simple_value))
                curve.setdefault(value.tag, {})[int(event.step)] = number
    return {tag: sorted(points.items()) for tag, points in curve.items()}


def report_metrics(run_dir: str) -> dict:
    """Per-lesion AUPR and the referable/any-DR ROC-AUC of a finished run on its own
    validation sets (``coopseg.evaluation.report``), without figures' files."""

    config, system = load_run(run_dir)
    inputs = build_eval_inputs(config)
    # Only the heads this run trained (JointSeg's seg_only run has an untrained classifier).
    mode = config.train.mode
    grades = system.clf_model is not None and mode in ("joint", "clf_only")
    masks = system.seg_model is not None and mode in ("joint", "seg_only")
    report = build_report(system, inputs.clf_val if grades else None,
                          inputs.seg_val if masks else None,
                          config.model.num_grades, config.data.class_names,
                          ReportOptions(grid_images=0, curve_points=2)).metrics
    seg, clf = report.get("segmentation", {}), report.get("classification", {})
    return {"mean_lesion_aupr": seg.get("mean_aupr"), "lesion_aupr": seg.get("aupr"),
            "referable_roc_auc": (clf.get("referable_dr") or {}).get("roc_auc"),
            "any_dr_roc_auc": (clf.get("any_dr") or {}).get("roc_auc")}


class Runner:
    """Trains rows stage by stage into ``out``, skipping what is already finished."""

    def __init__(self, out: str, scale: str, data: DataSource, seeds: Sequence[int],
                 steps: Optional[int] = None, rerun: bool = False, export: bool = False,
                 log: Callable[[str], None] = print, deterministic: bool = False,
                 report: bool = False):
        if scale not in SCALES:
            raise ConfigError(f"unknown scale {scale!r}; choose one of {SCALES}")
        if not seeds:
            raise ConfigError("--seeds must name at least one seed")
        if steps is not None and steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {steps}")
        self.out, self.scale, self.data = os.path.abspath(out), scale, data
        self.seeds, self.steps, self.rerun, self.export = list(seeds), steps, rerun, export
        self.deterministic = deterministic
        self.report = report
        self.log = log
        self._rerun_done: set = set()
        self._finished = self._index_finished()

    def _index_finished(self) -> Dict[str, dict]:
        """fingerprint -> record of every stage that finished training in ``out``."""
        index = {}
        for path in glob.glob(os.path.join(self.out, "*", "seed*", "*", STAGE_RECORD)):
            record = _read_json(path)
            if record and record.get("status") == "ok" and not record.get("reused_from"):
                index[record["fingerprint"]] = record
        return index

    # -- rows -------------------------------------------------------------------------
    def row(self, row: str, train: bool = True, progress: str = "") -> dict:
        """Every seed of ``row``: trained (``train``) or only loaded if finished."""
        seeds = []
        for seed in self.seeds:
            if train and self.rerun and (row, seed) not in self._rerun_done:
                shutil.rmtree(os.path.join(self.out, row, f"seed{seed}"), ignore_errors=True)
                self._finished = self._index_finished()
                self._rerun_done.add((row, seed))
            seeds.append(self._row_seed(row, seed, train, progress))
        return {"row": row, "seeds": seeds}

    def _row_seed(self, row: str, seed: int, train: bool, progress: str) -> dict:
        stages = prepare_stages(row, self.scale, self.data, seed, self.out, self.steps,
                                self.deterministic)
        records, upstream, t0 = [], "", time.perf_counter()
        for stage in stages:
            if records:
                # The predecessor may have been reused from another row's directory.
                stage.config.train.init_encoder_from = records[-1]["run_dir"]
            record = self._stage(row, seed, stage, upstream, train, progress)
            if record is None:
                return {"seed": seed, "status": "not run", "stages": records}
            records.append(record)
            upstream = record["fingerprint"]
            if record["status"] != "ok":
                break
        result = {"seed": seed, "status": records[-1]["status"], "stages": records}
        if train:
            times = ", ".join(f"{r['stage']} {r['action']} "
                              f"({results_lib.format_seconds(r['wall_time_s'])})" for r in records)
            self.log(f"{progress}{row} seed {seed}: {times}; "
                     f"{results_lib.format_seconds(time.perf_counter() - t0)} here -> "
                     f"{results_lib.headline(records[-1])}")
        return result

    def _stage(self, row: str, seed: int, stage: Stage, upstream: str, train: bool,
               progress: str = "") -> Optional[dict]:
        """The stage's record: finished earlier, reused, or trained now (``train``);
        None when it has not finished (with these settings) and ``train`` is False."""
        config = stage.config
        run_dir = config.train.model_dir
        fp = fingerprint(config, upstream)
        record = _read_json(os.path.join(run_dir, STAGE_RECORD))
        if record is not None and record["fingerprint"] == fp:
            return dict(record, action="finished earlier")
        if not train:
            return None
        if record is not None:
            self._refuse(run_dir, record["config"], config)
        started = _read_json(os.path.join(run_dir, "config.json"))
        if started is not None and fingerprint_of_dict(started, upstream) != fp:
            self._refuse(run_dir, started, config)
        same = self._finished.get(fp)
        if same is not None and same["run_dir"] != run_dir:
            record = dict(same, row=row, seed=seed, stage=stage.name, reused_from=same["run_dir"])
            self._write_record(run_dir, record)
            return dict(record, action="reused")
        tc = config.train
        self.log(f"{progress}{row} seed {seed}: {stage.name}: {config.method} {tc.mode}, "
                 f"{tc.steps} steps{' (resuming)' if started else ''}"
                 f"{', encoder from ' + tc.init_encoder_from if tc.init_encoder_from else ''}")
        return dict(self._train(row, seed, stage, fp), action="trained")

    def _refuse(self, run_dir: str, found: dict, config: ExperimentConfig) -> None:
        diffs = _config_differences(_fingerprint_dict(found), _fingerprint_dict(to_dict(config)))
        shown = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise ConfigError(
            f"{run_dir} holds a run of another configuration "
            f"({shown or 'its pre-training stage changed'}); pass --rerun to retrain these "
            "rows, or choose another --out")

    def _train(self, row: str, seed: int, stage: Stage, fp: str) -> dict:
        import tensorflow as tf


        config = stage.config
        # A fresh Keras state per stage; train() seeds everything from train.seed (= seed).
        tf.keras.backend.clear_session()
        logging.info("Training %s (stage %s, seed %d) into %s", row, stage.name, seed,
                     config.train.model_dir)
        t0 = time.perf_counter()
        status, error, metrics = "ok", "", {}
        try:
            metrics = train(config, export=self.export)["metrics"]
        except TrainingDiverged as err:
            status, error = "diverged", str(err)
        extra = report_metrics(config.train.model_dir) if self.report and status == "ok" else {}
        record = {"row": row, "seed": seed, "stage": stage.name, "status": status,
                  "error": error, "fingerprint": fp, "run_dir": config.train.model_dir,
                  "reused_from": None, "method": config.method, "mode": config.train.mode,
                  "config": to_dict(config), "metrics": metrics,
                  "curve": validation_curve(config.train.model_dir), "report": extra,
                  "wall_time_s": time.perf_counter() - t0,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write_record(config.train.model_dir, record)
        if status == "ok":
            self._finished[fp] = record
        return record

    @staticmethod
    def _write_record(run_dir: str, record: dict) -> None:
        os.makedirs(run_dir, exist_ok=True)
        write_json_atomically(os.path.join(run_dir, STAGE_RECORD), record)
