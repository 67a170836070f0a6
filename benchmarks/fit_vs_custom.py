"""Our seg-only step vs Keras ``model.fit`` on the same model, loss, optimizer and batches.

    python -m benchmarks.fit_vs_custom --scale=small --rounds=8 --steps_per_round=5

Read keras_fit / custom_step, taken within each round (``common.paired_ratios``): >= 1.0
means the custom step is not slower than Keras' own loop (benchmarks/README.md).
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, List, Optional

import tensorflow as tf
from absl import app, flags, logging

from benchmarks.common import (Case, case_stats, describe_machine, format_ratios, format_table,
                               machine_info, paired_ratios, per_op, run_interleaved)
from benchmarks.step_cost import (STEP_TABLE_HEADER, StepBench, StepOptions, build_step_bench,
                                  define_step_flags, describe_config, describe_step_setting,
                                  log_round, step_case, step_options_from_flags, step_row, wait_for,
                                  write_json)
from coopseg.config import ExperimentConfig
from coopseg.models.losses import l2_penalty
from coopseg.models.registry import build_system
from coopseg.training.agents import make_optimizer
from coopseg.training.precision import use_precision
from coopseg.training.schedules import PolynomialDecayWithWarmup


def build_fit_model(config: ExperimentConfig, bench: StepBench) -> tf.keras.Model:
    """A fresh segmenter of ``config``, compiled as the seg agent trains its own.

    A second model system of the same config whose segmenter is ``compile``d with the
    same optimizer (SGD + Nesterov, the agent's polynomial-decay schedule), the same loss
    function (the seg agent's own, class weights included) and the same weight decay
    (``add_loss`` of the same L2 term).
    """
    seg_agent = bench.trainers["seg_only"].seg_agent
    agent_cfg = config.train.seg
    with use_precision(config):
        model = build_system(config).seg_model
        schedule = PolynomialDecayWithWarmup(agent_cfg.learning_rate, config.train.steps,
                                             end_learning_rate=agent_cfg.end_learning_rate,
                                             power=agent_cfg.decay_power,
                                             warmup_steps=agent_cfg.warmup_steps)
        optimizer = make_optimizer(agent_cfg, schedule, config.train.mixed_precision)
    # The custom step adds the same term to its loss (coopseg.training.cooperative).
    model.add_loss(lambda: l2_penalty(model.trainable_variables, agent_cfg.weight_decay))
    batch = agent_cfg.batch_size

    def loss(masks, logits):
        return seg_agent.loss_fn(masks, logits, batch)

    model.compile(optimizer=optimizer, loss=loss, jit_compile=config.run.jit_compile,
                  steps_per_execution=1)
    return model


def fit_case(model: tf.keras.Model, dataset: tf.data.Dataset, steps: int,
             images_per_step: int) -> Case:
    """``steps`` training steps of ``model.fit`` (one call, one epoch)."""
    def run() -> None:
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)

    return Case("keras_fit", run, ops=steps, images=steps * images_per_step)


def measure_fit_vs_custom(options: StepOptions = StepOptions(), *, rounds: int = 5,
                          steps_per_round: int = 5,
                          on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                          ) -> dict:
    """Time the seg-only step and ``model.fit`` side by side; returns the results dict.

    Custom: ``CooperativeTrainer(mode=seg_only).step_fn``, the ``tf.function`` training
    runs (one agent; the same code path as the joint step). Keras: ``build_fit_model``,
    then ``fit(dataset, epochs=1, steps_per_epoch=k)`` on a dataset that repeats the same
    pre-made batch. Both are traced before timing (``warmup_steps``); Keras keeps its
    compiled ``train_function`` across ``fit`` calls, so a timed block pays only
    ``fit``'s per-call set-up (iterator, callbacks), spread over k steps.

    Keys: ``machine``, ``load_after``, ``config``, ``rounds``, ``steps_per_round``,
    ``steps`` (per case ``custom_step`` and ``keras_fit``: ``ms``/``cpu_ms`` quartiles
    per step, images/s, samples), ``ratio`` / ``cpu_ratio`` (per-round fit / custom,
    wall and CPU), ``keras_loss_falls`` (fit's loss went down over the run: it trained).
    """
    if steps_per_round < 1:
        raise ValueError(f"steps_per_round must be >= 1, got {steps_per_round}")
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="fit_vs_custom_") as model_dir:
        config = options.config(model_dir)
        bench = build_step_bench(config, modes=("seg_only",))
        model = build_fit_model(config, bench)
        dataset = tf.data.Dataset.from_tensors(bench.seg_batch).repeat()
        logging.info("fit_vs_custom: %d parameters; warming up (tracing)", bench.num_params)
        for _ in range(max(1, options.warmup_steps)):
            wait_for(bench.step("seg_only"))
        history = model.fit(dataset, epochs=1, steps_per_epoch=max(1, options.warmup_steps),
                            verbose=0)
        first_loss = history.history["loss"][0]
        n_seg = bench.images_per_step("seg_only")
        cases = [step_case(bench, "seg_only", steps_per_round, name="custom_step"),
                 fit_case(model, dataset, steps_per_round, n_seg)]
        samples = run_interleaved(cases, rounds, on_round)
        last_loss = model.history.history["loss"][-1]  # the last timed fit's training loss
        custom, keras_fit = (per_op(samples.wall, case) for case in cases)
        cpu_custom, cpu_fit = (per_op(samples.cpu, case) for case in cases)
        result = {"machine": machine, "config": describe_config(bench, options),
                  "rounds": rounds, "steps_per_round": steps_per_round,
                  "steps": {case.name: case_stats(case, samples) for case in cases},
                  "ratio": paired_ratios(keras_fit, custom),
                  "cpu_ratio": paired_ratios(cpu_fit, cpu_custom),
                  "keras_loss_falls": last_loss < first_loss}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_fit_vs_custom(result: dict) -> str:
    steps = result["steps"]
    rows = [step_row(name, stats) for name, stats in steps.items()]
    wall, cpu = result["ratio"], result["cpu_ratio"]
    return "\n".join([
        f"fit_vs_custom (seg-only): {describe_step_setting(result['config'])}; "
        f"{result['rounds']} rounds x {result['steps_per_round']} steps per case",
        describe_machine(result["machine"], result.get("load_after")), "",
        format_table(STEP_TABLE_HEADER, rows), "",
        f"keras_fit / custom_step: {format_ratios(wall, cpu)}; >= 1 means the custom step "
        "is not slower",
        f"model.fit's loss fell during the run: {result['keras_loss_falls']}"])


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    result = measure_fit_vs_custom(step_options_from_flags(), rounds=flags.FLAGS.rounds,
                                   steps_per_round=flags.FLAGS.steps_per_round,
                                   on_round=log_round)
    print(format_fit_vs_custom(result))
    write_json(flags.FLAGS.output_json, result)


if __name__ == "__main__":
    define_step_flags(rounds=5, steps_per_round=5)
    app.run(main)
