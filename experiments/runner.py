"""Train a row's stages into ``<out>/<row>/seed<k>/<stage>/``, resumably.

Each stage is a normal run directory plus a ``stage.json`` record. A stage is identified
by its fingerprint (``fingerprint``), so a finished stage is skipped, an interrupted one
resumed, an identical one of another row reused, and a directory holding another
configuration refused (``rerun`` retrains it).
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

from coopseg.config import (NOT_RESULT_DEFINING, ConfigError, ExperimentConfig, from_dict,
                            result_dict, scaled_warmup, to_dict)
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


def stage_dir(out: str, row: str, seed: int, stage: str) -> str:
    return os.path.join(out, row, f"seed{seed}", stage)


def prepare_stages(row: str, scale: str, data: DataSource, seed: int, out: str,
                   steps: Optional[int] = None, deterministic: bool = False) -> List[Stage]:
    """The row's stages, configured for this suite run: data, seed, step budget, op
    determinism and run directories. Which run a later stage starts from
    (``train.init_encoder_from``) is set once, when its predecessor has a record
    (``Runner._row_seed``): that run may be another row's, reused."""
    stages = row_stages(row, scale)
    for stage in stages:
        c = stage.config
        data.apply(c)
        c.train.seed = seed
        c.run.deterministic = deterministic
        if steps is not None:
            _set_steps(c, steps)
        c.run.model_dir = stage_dir(out, row, seed, stage.name)
        c.validate()
    return stages


def _set_steps(config: ExperimentConfig, steps: int) -> None:
    """Change the step budget, scaling LR warm-up with it so the schedule keeps its shape."""
    tc = config.train
    for agent in ("seg", "clf"):
        cfg = getattr(tc, agent)
        warmup = scaled_warmup(cfg.warmup_steps, steps, tc.steps)
        setattr(tc, agent, dataclasses.replace(cfg, warmup_steps=warmup))
    tc.steps = steps


def fingerprint(config: ExperimentConfig, upstream: str = "") -> str:
    """A hash of what defines a stage's result (``coopseg.config.result_dict``): the
    config without its name, its run settings and its defaults, with the run it starts
    from (``train.init_encoder_from``) named by that run's fingerprint ``upstream``
    instead of its path."""
    return fingerprint_of_dict(to_dict(config), upstream)


def fingerprint_of_dict(config_dict: dict, upstream: str = "") -> str:
    """``fingerprint`` of a config as a dict (a run's ``config.json`` or a stage record's
    config, also one written by an earlier coopseg: ``from_dict`` upgrades it)."""
    text = json.dumps(_fingerprint_dict(config_dict, upstream), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _fingerprint_dict(config_dict: dict, upstream: str = "") -> dict:
    config = from_dict(config_dict)
    if upstream:
        config.train.init_encoder_from = upstream
    return result_dict(config)


# Records written since fingerprints hash ``result_dict`` carry this version and the
# fingerprint of the stage they started from; earlier records are read by recomputing.
FINGERPRINT_VERSION = 2


def _comparable(config_dict: dict) -> dict:
    """A config's result-defining fields with every default written out, for messages."""
    d = to_dict(from_dict(config_dict))
    for key in NOT_RESULT_DEFINING:
        d.pop(key)
    d["train"].pop("init_encoder_from")  # a path; the stage it names is compared instead
    return d


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
    """Per-lesion AUPR (and PR curves of up to 64 points) and the referable/any-DR
    ROC-AUC of a finished run on its own validation sets (``coopseg.evaluation.report``),
    without figures' files."""

    config, system = load_run(run_dir)
    inputs = build_eval_inputs(config)
    # Only the heads this run trained (JointSeg's seg_only run has an untrained classifier).
    grades = system.clf_model is not None and config.train.trains_classifier
    masks = system.seg_model is not None and config.train.trains_segmenter
    report = build_report(system, inputs.clf_val if grades else None,
                          inputs.seg_val if masks else None,
                          config.model.num_grades, config.data.class_names,
                          ReportOptions(grid_images=0, curve_points=64)).metrics
    seg, clf = report.get("segmentation", {}), report.get("classification", {})
    return {"mean_lesion_aupr": seg.get("mean_aupr"), "lesion_aupr": seg.get("aupr"),
            "pr_curves": seg.get("pr_curves"),
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
        self._fingerprints: Dict[str, str] = {}
        self._finished = self._index_finished()

    def _index_finished(self) -> Dict[str, dict]:
        """fingerprint -> record of every stage that finished training in ``out``."""
        self._fingerprints = {}
        index = {}
        for path in glob.glob(os.path.join(self.out, "*", "seed*", "*", STAGE_RECORD)):
            record = _read_json(path)
            if record and record.get("status") == "ok" and not record.get("reused_from"):
                index[self._record_fingerprint(record)] = record
        return index

    def _record_fingerprint(self, record: dict) -> str:
        """The fingerprint of a stage record. A record from before ``FINGERPRINT_VERSION``
        holds an earlier kind of hash: its fingerprint is recomputed from its config, the
        stage it started from being the record in the run directory its config names."""
        if record.get("fingerprint_version") == FINGERPRINT_VERSION:
            return record["fingerprint"]
        run_dir = record["run_dir"]
        if run_dir not in self._fingerprints:
            start = record["config"].get("train", {}).get("init_encoder_from") or ""
            previous = _read_json(os.path.join(start, STAGE_RECORD)) if start else None
            upstream = self._record_fingerprint(previous) if previous else ""
            self._fingerprints[run_dir] = fingerprint_of_dict(record["config"], upstream)
        return self._fingerprints[run_dir]

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
            upstream = self._record_fingerprint(record)
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
        run_dir = config.run.model_dir
        fp = fingerprint(config, upstream)
        record = _read_json(os.path.join(run_dir, STAGE_RECORD))
        if record is not None and self._record_fingerprint(record) == fp:
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
            record = dict(same, row=row, seed=seed, stage=stage.name, reused_from=same["run_dir"],
                          fingerprint=fp, fingerprint_version=FINGERPRINT_VERSION,
                          upstream=upstream)
            self._write_record(run_dir, record)
            return dict(record, action="reused")
        tc = config.train
        self.log(f"{progress}{row} seed {seed}: {stage.name}: {config.method} {tc.mode}, "
                 f"{tc.steps} steps{' (resuming)' if started else ''}"
                 f"{', encoder from ' + tc.init_encoder_from if tc.init_encoder_from else ''}")
        return dict(self._train(row, seed, stage, fp, upstream), action="trained")

    def _refuse(self, run_dir: str, found: dict, config: ExperimentConfig) -> None:
        diffs = _config_differences(_comparable(found), _comparable(to_dict(config)))
        shown = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise ConfigError(
            f"{run_dir} holds a run of another configuration "
            f"({shown or 'its pre-training stage changed'}); pass --rerun to retrain these "
            "rows, or choose another --out")

    def _train(self, row: str, seed: int, stage: Stage, fp: str, upstream: str) -> dict:
        import tensorflow as tf


        config = stage.config
        # A fresh Keras state per stage; train() seeds everything from train.seed (= seed).
        tf.keras.backend.clear_session()
        logging.info("Training %s (stage %s, seed %d) into %s", row, stage.name, seed,
                     config.run.model_dir)
        t0 = time.perf_counter()
        status, error, metrics = "ok", "", {}
        try:
            metrics = train(config, export=self.export)["metrics"]
        except TrainingDiverged as err:
            status, error = "diverged", str(err)
        extra = report_metrics(config.run.model_dir) if self.report and status == "ok" else {}
        record = {"row": row, "seed": seed, "stage": stage.name, "status": status,
                  "error": error, "fingerprint": fp, "fingerprint_version": FINGERPRINT_VERSION,
                  "upstream": upstream, "run_dir": config.run.model_dir,
                  "reused_from": None, "method": config.method, "mode": config.train.mode,
                  "config": to_dict(config), "metrics": metrics,
                  "curve": validation_curve(config.run.model_dir), "report": extra,
                  "wall_time_s": time.perf_counter() - t0,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._write_record(config.run.model_dir, record)
        if status == "ok":
            self._finished[fp] = record
        return record

    @staticmethod
    def _write_record(run_dir: str, record: dict) -> None:
        os.makedirs(run_dir, exist_ok=True)
        write_json_atomically(os.path.join(run_dir, STAGE_RECORD), record)
