"""The price of cooperation: one joint step vs one seg-only plus one clf-only step.

    python -m benchmarks.step_cost --scale=small
    python -m benchmarks.step_cost --scale=small --cooperation      # each cooperation option

Read joint / (seg + clf) per round: 1.0 = cooperation is free; goal <= 1.1 (benchmarks/README.md).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from benchmarks.common import (Case, Samples, case_stats, describe_machine, format_range,
                               format_ratios, format_table, machine_info, paired_ratios, per_op,
                               run_interleaved)
from coopseg.config import ConfigError, ExperimentConfig, override
from coopseg.models.registry import build_system
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.precision import use_precision
from experiments.scales import experiment

MODES = ("joint", "seg_only", "clf_only")
SCALES = ("tiny", "small", "paper")
Batch = Tuple[tf.Tensor, tf.Tensor]


@dataclass(frozen=True)
class StepOptions:
    """Which model and batches to time; 0 keeps the scale's own value.

    ``overrides`` are ``field.path=value`` strings applied last, the way ``coopseg-train
    --set`` takes them (e.g. ``model.pag_mode=none``).
    """

    scale: str = "small"
    input_size: int = 0
    seg_batch: int = 0
    batch_ratio: int = 0
    jit_compile: bool = False
    warmup_steps: int = 2  # untimed steps per mode (the first one traces)
    overrides: Tuple[str, ...] = ()

    def config(self, model_dir: str = "") -> ExperimentConfig:
        """The JointSeg experiment of ``scale`` with these options applied, validated."""
        if self.scale not in SCALES:
            raise ConfigError(f"scale must be one of {SCALES}, got {self.scale!r}")
        model = {"input_size": self.input_size} if self.input_size else {}
        run: Dict[str, object] = {"jit_compile": self.jit_compile}
        if model_dir:
            run["model_dir"] = model_dir
        train = {"batch_ratio": self.batch_ratio} if self.batch_ratio else {}
        config = experiment(self.scale, model=model, train=train, run=run)
        if self.seg_batch:
            config.train.seg = dataclasses.replace(config.train.seg, batch_size=self.seg_batch)
        for item in self.overrides:
            path, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r}: expected field.path=value")
            override(config, path.strip(), value.strip())
        return config.validate()


def synthetic_batches(config: ExperimentConfig, seed: int = 0) -> Tuple[Batch, Batch]:
    """Random (images, grades) and (images, masks) batches of the agents' sizes."""
    rng = np.random.default_rng(seed)
    size, classes = config.model.input_size, config.model.num_seg_classes
    n_clf, n_seg = config.train.clf_agent().batch_size, config.train.seg.batch_size
    clf = (tf.constant(rng.normal(size=(n_clf, size, size, 3)), tf.float32),
           tf.constant(rng.integers(0, config.model.num_grades, n_clf), tf.int32))
    seg = (tf.constant(rng.normal(size=(n_seg, size, size, 3)), tf.float32),
           tf.constant(rng.integers(0, classes, (n_seg, size, size)), tf.int32))
    return clf, seg


@dataclass
class StepBench:
    """Trainers of the requested modes over one shared model system, and their batches."""

    config: ExperimentConfig
    trainers: Dict[str, CooperativeTrainer]
    clf_batch: Batch
    seg_batch: Batch
    num_params: int

    def images_per_step(self, mode: str) -> int:
        trainer = self.trainers[mode]
        return ((int(self.clf_batch[0].shape[0]) if trainer.clf_agent else 0)
                + (int(self.seg_batch[0].shape[0]) if trainer.seg_agent else 0))

    def step(self, mode: str, clf_batch: Optional[Batch] = None,
             seg_batch: Optional[Batch] = None) -> Dict[str, tf.Tensor]:
        """One training step of ``mode`` (on the synthetic batches unless given)."""
        trainer = self.trainers[mode]
        clf = (clf_batch or self.clf_batch) if trainer.clf_agent else None
        seg = (seg_batch or self.seg_batch) if trainer.seg_agent else None
        return trainer.step_fn(clf, seg)

    def all_finite(self) -> bool:
        return all(bool(t.step_fn.all_finite.numpy()) for t in self.trainers.values())


def build_step_bench(config: ExperimentConfig, modes: Sequence[str] = MODES) -> StepBench:
    """One model system and a ``CooperativeTrainer`` per mode on it (shared weights).

    Built under ``train.mixed_precision`` (``--set=train.mixed_precision=...``); the
    layers keep that policy after the global one is reset.
    """
    with use_precision(config):
        system = build_system(config)
        trainers = {}
        for mode in modes:
            mode_config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                                mode=mode))
            trainers[mode] = CooperativeTrainer(mode_config, system)
    clf_batch, seg_batch = synthetic_batches(config)
    num_params = sum(part.count_params() for part in system.parts.values())
    return StepBench(config, trainers, clf_batch, seg_batch, num_params)


def wait_for(outputs: Dict[str, tf.Tensor]) -> None:
    """Block until a step's results exist (reading them forces the computation)."""
    for value in outputs.values():
        value.numpy()


def step_case(bench: StepBench, mode: str, steps: int, name: str = "") -> Case:
    """``steps`` consecutive steps of ``mode`` on the synthetic batches (case ``name``,
    by default the mode's)."""
    def run() -> None:
        outputs = {}
        for _ in range(steps):
            outputs = bench.step(mode)
        wait_for(outputs)

    return Case(name or mode, run, ops=steps, images=steps * bench.images_per_step(mode))


def warm_up(bench: StepBench, steps: int) -> None:
    """Trace and run each mode's step ``steps`` times, untimed (at least once)."""
    for mode in bench.trainers:
        for _ in range(max(1, steps)):
            wait_for(bench.step(mode))


def describe_config(bench: StepBench, options: StepOptions) -> dict:
    """The benchmark's setting, as it goes into results and tables."""
    c = bench.config
    return {"scale": options.scale, "method": c.method, "input_size": c.model.input_size,
            "seg_batch": c.train.seg.batch_size, "clf_batch": c.train.clf_agent().batch_size,
            "batch_ratio": c.train.batch_ratio, "jit_compile": c.run.jit_compile,
            "mixed_precision": c.train.mixed_precision or "float32",
            "overrides": list(options.overrides), "num_params": bench.num_params}


def step_cost_summary(samples: Samples, cases: Sequence[Case]) -> dict:
    """Per-mode statistics, the paired cost ratios and the images/s of both ways."""
    steps = {case.name: case_stats(case, samples) for case in cases}
    by_mode = {case.name: case for case in cases}

    def ratio(seconds: Dict[str, List[float]]) -> dict:
        joint, seg, clf = (per_op(seconds, by_mode[mode]) for mode in MODES)
        return paired_ratios(joint, seg, clf)

    separate_ms = steps["seg_only"]["ms"]["median"] + steps["clf_only"]["ms"]["median"]
    return {
        "steps": steps,
        "ratio": ratio(samples.wall),
        "cpu_ratio": ratio(samples.cpu),
        "images_per_s": steps["joint"]["images_per_s"],
        "separate_images_per_s": 1000.0 * steps["joint"]["images_per_op"] / separate_ms,
    }


def measure_step_cost(options: StepOptions = StepOptions(), *, rounds: int = 5,
                      steps_per_round: int = 3,
                      on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                      ) -> dict:
    """Time joint, seg-only and clf-only steps side by side; returns the results dict.

    One ``ModelSystem`` (so all three steps train the same weights) and three
    ``CooperativeTrainer`` on it, modes ``joint``, ``seg_only`` and ``clf_only``: what is
    timed is ``trainer.step_fn``, the very ``tf.function`` training runs. The batches are
    random tensors made once, so only the step is measured (``input_pipeline.py``
    measures the data side). Tracing is excluded (``warmup_steps`` untimed calls per
    mode). Rounds interleave the modes (``common.run_interleaved``): each round times
    ``steps_per_round`` steps of every mode, and the ratio joint / (seg + clf) is taken
    within each round before the median over rounds, so load from other jobs on the
    machine cancels out.

    Keys: ``machine`` (date, cores, load before), ``load_after``, ``config`` (scale,
    sizes, batches, parameter count), ``rounds``, ``steps_per_round``, ``steps`` (per
    mode: ``ms`` and ``cpu_ms`` quartiles per step, ``images_per_op``,
    ``images_per_s``, ``samples_ms``), ``ratio`` (quartiles and samples of the
    per-round joint / (seg_only + clf_only) in wall time), ``cpu_ratio`` (the same in
    process CPU time, steadier on a shared machine), ``images_per_s`` (joint step),
    ``separate_images_per_s`` (the same images through the two single-agent steps),
    ``all_finite`` (no loss became NaN/Inf).
    """
    if steps_per_round < 1:
        raise ValueError(f"steps_per_round must be >= 1, got {steps_per_round}")
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="step_cost_") as model_dir:
        bench = build_step_bench(options.config(model_dir))
        logging.info("step_cost: %d parameters; warming up (tracing) %s", bench.num_params,
                     ", ".join(MODES))
        warm_up(bench, options.warmup_steps)
        cases = [step_case(bench, mode, steps_per_round) for mode in MODES]
        samples = run_interleaved(cases, rounds, on_round)
        result = {"machine": machine, "config": describe_config(bench, options),
                  "rounds": rounds, "steps_per_round": steps_per_round,
                  **step_cost_summary(samples, cases), "all_finite": bench.all_finite()}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def describe_step_setting(cfg: dict) -> str:
    """``input 128 px, clf batch 16 + seg batch 4 (ratio 4), 0.40 M params, ...``."""
    text = (f"scale={cfg['scale']}, input {cfg['input_size']} px, clf batch {cfg['clf_batch']} "
            f"+ seg batch {cfg['seg_batch']} (ratio {cfg['batch_ratio']}), "
            f"{cfg['num_params'] / 1e6:.2f} M params, jit_compile={cfg['jit_compile']}")
    if cfg.get("mixed_precision", "float32") != "float32":
        text += f", {cfg['mixed_precision']}"
    if cfg["overrides"]:
        text += ", " + " ".join(cfg["overrides"])
    return text


STEP_TABLE_HEADER = ["step", "images/step", "wall ms/step (median)", "wall IQR ms",
                     "CPU ms/step", "images/s (wall)"]


def step_row(name: str, stats: dict) -> list:
    """One row of a ``STEP_TABLE_HEADER`` table from a case's ``case_stats``."""
    return [name, int(stats["images_per_op"]), stats["ms"]["median"], format_range(stats["ms"]),
            stats["cpu_ms"]["median"], stats["images_per_s"]]


def format_step_cost(result: dict) -> str:
    """The results as a printable table plus the ratio lines."""
    steps = result["steps"]
    rows = [step_row(mode, steps[mode]) for mode in MODES]
    rows.append(["seg_only + clf_only", int(steps["joint"]["images_per_op"]),
                 steps["seg_only"]["ms"]["median"] + steps["clf_only"]["ms"]["median"], "",
                 steps["seg_only"]["cpu_ms"]["median"] + steps["clf_only"]["cpu_ms"]["median"],
                 result["separate_images_per_s"]])
    wall, cpu = result["ratio"], result["cpu_ratio"]
    lines = [f"step_cost: {describe_step_setting(result['config'])}; "
             f"{result['rounds']} rounds x {result['steps_per_round']} steps per mode",
             describe_machine(result["machine"], result.get("load_after")), "",
             format_table(STEP_TABLE_HEADER, rows), "",
             f"joint / (seg_only + clf_only): {format_ratios(wall, cpu)}; "
             "medians of per-round ratios",
             f"joint step: {result['images_per_s']:.1f} images/s"]
    if not result["all_finite"]:
        lines.append("note: a loss became NaN/Inf during the benchmark (timings still valid)")
    return "\n".join(lines)


# --- the cooperation options --------------------------------------------------------------

# Each option as the config overrides that switch it on (experiments/coop_*.py).
COOPERATION_OPTIONS: Dict[str, Tuple[str, ...]] = {
    "clf_encoder_lr_scale=0.1": ("train.cooperation.clf_encoder_lr_scale=0.1",),
    "normalize": ("train.cooperation.gradient_balance=normalize",),
    "pcgrad": ("train.cooperation.gradient_balance=pcgrad",),
    "per_agent_batch_norm": ("model.per_agent_batch_norm=true",),
}
PAPER_JOINT = "joint (paper)"


def measure_cooperation_cost(options: StepOptions = StepOptions(), *, rounds: int = 5,
                             steps_per_round: int = 3,
                             on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                             ) -> dict:
    """Time the joint step with each cooperation option next to the paper's joint step.

    ``--cooperation`` in the CLI: each option (``train.cooperation``, per-agent
    BatchNorm) against the paper's joint step, on the same batches, interleaved as in
    ``measure_step_cost``.

    Keys: ``machine``, ``load_after``, ``config``, ``rounds``, ``steps_per_round``,
    ``steps`` (per case, as in ``measure_step_cost``), ``ratio`` / ``cpu_ratio`` (per
    option: quartiles of the per-round option / paper step time).
    """
    if steps_per_round < 1:
        raise ValueError(f"steps_per_round must be >= 1, got {steps_per_round}")
    machine = machine_info()
    variants = {PAPER_JOINT: options}
    variants.update({name: dataclasses.replace(options, overrides=options.overrides + sets)
                     for name, sets in COOPERATION_OPTIONS.items()})
    with tempfile.TemporaryDirectory(prefix="step_cost_") as model_dir:
        benches = {name: build_step_bench(opt.config(model_dir), modes=("joint",))
                   for name, opt in variants.items()}
        for bench in benches.values():
            warm_up(bench, options.warmup_steps)
        cases = [step_case(bench, "joint", steps_per_round, name=name)
                 for name, bench in benches.items()]
        samples = run_interleaved(cases, rounds, on_round)
        by_name = {case.name: case for case in cases}

        def ratios(seconds: Dict[str, List[float]]) -> Dict[str, dict]:
            paper = per_op(seconds, by_name[PAPER_JOINT])
            return {name: paired_ratios(per_op(seconds, by_name[name]), paper)
                    for name in COOPERATION_OPTIONS}

        result = {"machine": machine, "config": describe_config(benches[PAPER_JOINT], options),
                  "rounds": rounds, "steps_per_round": steps_per_round,
                  "steps": {case.name: case_stats(case, samples) for case in cases},
                  "ratio": ratios(samples.wall), "cpu_ratio": ratios(samples.cpu),
                  "all_finite": all(b.all_finite() for b in benches.values())}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_cooperation_cost(result: dict) -> str:
    steps = result["steps"]
    rows = [step_row(name, stats) for name, stats in steps.items()]
    lines = [f"step_cost --cooperation: {describe_step_setting(result['config'])}; "
             f"{result['rounds']} rounds x {result['steps_per_round']} joint steps per case",
             describe_machine(result["machine"], result.get("load_after")), "",
             format_table(STEP_TABLE_HEADER, rows), ""]
    for name in COOPERATION_OPTIONS:
        lines.append(f"{name} / {PAPER_JOINT}: "
                     f"{format_ratios(result['ratio'][name], result['cpu_ratio'][name])}")
    if not result["all_finite"]:
        lines.append("note: a loss became NaN/Inf during the benchmark (timings still valid)")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------

def define_step_flags(flag_values: flags.FlagValues = flags.FLAGS, rounds: int = 5,
                      steps_per_round: int = 3, steps_help: str = "",
                      scale: str = "small") -> None:
    """Flags shared with the other benchmarks: model, sizes, batches, rounds, output."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("scale", scale, list(SCALES), "Model/batch config of "
                      "experiments.scales.", **fv)
    flags.DEFINE_integer("input_size", 0, "Input side in px; 0 = the scale's.", lower_bound=0,
                         **fv)
    flags.DEFINE_integer("seg_batch", 0, "Segmentation batch; 0 = the scale's.", lower_bound=0,
                         **fv)
    flags.DEFINE_integer("batch_ratio", 0, "Classifier batch = seg batch x this; 0 = the "
                         "scale's (paper 32).", lower_bound=0, **fv)
    flags.DEFINE_bool("jit_compile", False, "XLA-compile the step.", **fv)
    flags.DEFINE_integer("warmup_steps", 2, "Untimed steps per mode before timing (tracing).",
                         lower_bound=1, **fv)
    flags.DEFINE_multi_string("set", [], "Override a config field: --set=model.pag_mode=none.",
                              **fv)
    flags.DEFINE_integer("rounds", rounds, "Interleaved rounds.", lower_bound=1, **fv)
    flags.DEFINE_integer("steps_per_round", steps_per_round,
                         steps_help or "Steps of each mode per round.", lower_bound=0, **fv)
    flags.DEFINE_string("output_json", "", "Also write the results dict here.", **fv)


def step_options_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> StepOptions:
    v = flag_values
    return StepOptions(scale=v.scale, input_size=v.input_size, seg_batch=v.seg_batch,
                       batch_ratio=v.batch_ratio, jit_compile=v.jit_compile,
                       warmup_steps=v.warmup_steps, overrides=tuple(v.set))


def write_json(path: str, result: dict) -> None:
    """Write ``result`` as JSON to ``path`` (nothing when ``path`` is empty)."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"results written to {path}")


def log_round(r: int, seconds: Dict[str, float]) -> None:
    logging.info("round %d: %s", r + 1, ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items()))


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    measure, fmt = ((measure_cooperation_cost, format_cooperation_cost)
                    if flags.FLAGS.cooperation else (measure_step_cost, format_step_cost))
    result = measure(step_options_from_flags(), rounds=flags.FLAGS.rounds,
                     steps_per_round=flags.FLAGS.steps_per_round, on_round=log_round)
    print(fmt(result))
    write_json(flags.FLAGS.output_json, result)


if __name__ == "__main__":
    define_step_flags()
    flags.DEFINE_bool("cooperation", False, "Time the joint step with each cooperation "
                      "option against the paper's joint step instead.")
    app.run(main)
