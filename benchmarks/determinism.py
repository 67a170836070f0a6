"""What does ``--deterministic`` cost? Training steps with TensorFlow's op determinism
off and on, side by side.

    python -m benchmarks.determinism --scale=small --rounds=6 --steps_per_round=10

Read deterministic / default, per-round ratios of seconds per step (benchmarks/README.md).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

import tensorflow as tf
from absl import app, flags
from tensorflow.python.framework import config as tf_config

from benchmarks.common import (Case, case_stats, describe_machine, format_ratios, format_table,
                               machine_info, paired_ratios, per_op, run_interleaved)
from benchmarks.step_cost import SCALES, STEP_TABLE_HEADER, log_round, step_row, write_json
from coopseg.models.registry import build_system
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.tasks import build_inputs
from data_pipelines.decode import DecodeReport
from data_pipelines.synthetic import use_synthetic_data
from experiments.scales import experiment

CASES = ("default", "deterministic")


def _set_determinism(on: bool) -> None:
    if on and not tf_config.is_op_determinism_enabled():
        tf.config.experimental.enable_op_determinism()
    elif not on and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()


@dataclass
class TrainingCase:
    """A trainer and its two training iterators, built with determinism ``on``."""

    name: str
    on: bool
    trainer: CooperativeTrainer
    clf_iter: object
    seg_iter: object
    losses: List[float]

    def steps(self, count: int) -> None:
        out: Dict[str, tf.Tensor] = {}
        for _ in range(count):
            out = self.trainer.step_fn(next(self.clf_iter), next(self.seg_iter))
            self.losses.append(float(out["seg_loss"]) + float(out["clf_loss"]))


def build_case(name: str, on: bool, scale: str, data_dir: str, model_dir: str,
               seed: int, model: Optional[dict] = None) -> TrainingCase:
    """The case's trainer and pipelines, created while op determinism is ``on``."""
    _set_determinism(on)
    config = experiment(scale, model=model, train={"seed": seed},
                        run={"model_dir": os.path.join(model_dir, name), "deterministic": on})
    use_synthetic_data(config, data_dir, scale)
    config.validate()
    tf.keras.utils.set_random_seed(seed)
    system = build_system(config)
    trainer = CooperativeTrainer(config, system)
    inputs = build_inputs(config, start_step=0, report=DecodeReport())
    return TrainingCase(name, on, trainer, iter(inputs.clf_train), iter(inputs.seg_train), [])


def measure_determinism(scale: str = "small", *, rounds: int = 5, steps_per_round: int = 8,
                        warmup_steps: int = 2, data_dir: str = "", seed: int = 0,
                        model: Optional[dict] = None, on_round=None) -> dict:
    """Time training steps with op determinism off and on; returns the results dict.
    ``model``: ModelConfig fields to override (e.g. a smaller model for a smoke test).

    Two cases, interleaved round by round (``common.run_interleaved``), each a
    ``CooperativeTrainer`` of its own (same config, same seed, so the same initial
    weights) fed by its own real input pipelines (``coopseg.training.tasks.build_inputs``
    on a synthetic fundus set): ``default`` and ``deterministic``. Op determinism is
    process state, so each case's ``setup`` switches it to that case's value before its
    block, and the trainer, its ``tf.function`` step and its iterators were created in
    that state. A block is ``steps_per_round`` training steps (both agents, joint mode),
    pipeline included, since op determinism also constrains tf.data.

    The ratio is the median over rounds of the per-round ratio deterministic / default
    of seconds per step (wall and process CPU time). ``same_losses`` need not be true:
    op determinism may select other kernels than the default run uses.

    Keys: ``machine``, ``load_after``, ``scale``, ``rounds``, ``steps_per_round``,
    ``steps`` (per case: ``ms``/``cpu_ms`` quartiles per step, images/s), ``ratio`` and
    ``cpu_ratio`` (quartiles of per-round deterministic / default), ``same_losses``
    (the two cases' losses equal at every step).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    machine = machine_info()
    was_on = bool(tf_config.is_op_determinism_enabled())
    with tempfile.TemporaryDirectory(prefix="determinism_") as work:
        data_dir = data_dir or os.path.join(work, "data")
        cases = {name: build_case(name, name == "deterministic", scale, data_dir, work, seed,
                                  model)
                 for name in CASES}
        for case in cases.values():  # tracing and the pipelines' first fill, untimed
            _set_determinism(case.on)
            case.steps(warmup_steps)
        images = (cases["default"].trainer.clf_agent.batch_size
                  + cases["default"].trainer.seg_agent.batch_size) * steps_per_round
        timed = [Case(c.name, lambda c=c: c.steps(steps_per_round), ops=steps_per_round,
                      images=images, setup=lambda c=c: _set_determinism(c.on))
                 for c in cases.values()]
        try:
            samples = run_interleaved(timed, rounds, on_round)
        finally:
            _set_determinism(was_on)
        losses = {name: case.losses for name, case in cases.items()}
    by_name = {case.name: case for case in timed}

    def ratio(seconds: Dict[str, List[float]]) -> dict:
        return paired_ratios(per_op(seconds, by_name["deterministic"]),
                             per_op(seconds, by_name["default"]))

    return {"machine": machine, "load_after": [round(x, 2) for x in os.getloadavg()],
            "scale": scale, "rounds": rounds, "steps_per_round": steps_per_round,
            "steps": {case.name: case_stats(case, samples) for case in timed},
            "ratio": ratio(samples.wall), "cpu_ratio": ratio(samples.cpu),
            "same_losses": losses["default"] == losses["deterministic"]}


def format_determinism(result: dict) -> str:
    """The results as a printable table plus the ratio line."""
    rows = [step_row(name, result["steps"][name]) for name in CASES]
    return "\n".join([
        f"determinism: scale={result['scale']}, joint training steps with their input "
        f"pipelines; {result['rounds']} rounds x {result['steps_per_round']} steps per case",
        describe_machine(result["machine"], result.get("load_after")), "",
        format_table(STEP_TABLE_HEADER, rows), "",
        f"deterministic / default: {format_ratios(result['ratio'], result['cpu_ratio'])}; "
        "medians of per-round ratios",
        f"losses identical at every step: {result['same_losses']}"])


FLAGS = flags.FLAGS


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    result = measure_determinism(FLAGS.scale, rounds=FLAGS.rounds,
                                 steps_per_round=FLAGS.steps_per_round,
                                 warmup_steps=FLAGS.warmup_steps, data_dir=FLAGS.data_dir,
                                 on_round=log_round)
    print(format_determinism(result))
    write_json(FLAGS.output_json, result)


if __name__ == "__main__":
    flags.DEFINE_enum("scale", "small", list(SCALES), "Model/batch config of experiments.scales.")
    flags.DEFINE_integer("rounds", 5, "Interleaved rounds.", lower_bound=1)
    flags.DEFINE_integer("steps_per_round", 8, "Training steps of each case per round.",
                         lower_bound=1)
    flags.DEFINE_integer("warmup_steps", 2, "Untimed steps per case first (tracing).",
                         lower_bound=1)
    flags.DEFINE_string("data_dir", "", "Synthetic set to use or generate (default: a "
                        "temporary one of the scale's size).")
    flags.DEFINE_string("output_json", "", "Also write the results dict here.")
    app.run(main)
