"""FLOPs of one joint training step, the FLOP/s it achieves, and what this CPU can do.

    python -m benchmarks.flops --scale=small --rounds=5

Read the fraction: the step's achieved FLOP/s over those of one large 3x3 convolution
timed in the same rounds, a utilisation estimate (benchmarks/README.md).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import tensorflow as tf
from absl import app, flags, logging

from benchmarks.common import (Case, case_stats, describe_machine, format_range,
                               format_table, machine_info, paired_ratios, per_op,
                               run_interleaved)
from benchmarks.step_cost import (build_step_bench, define_step_flags, describe_config,
                                  describe_step_setting, log_round, step_case,
                                  step_options_from_flags, StepOptions, warm_up, write_json)

# A training step is taken as 3x the forward pass (backward = gradients w.r.t.
# activations + w.r.t. weights, each about one forward): an estimate, which the output says.
TRAINING_TO_FORWARD = 3.0


def graph_flops(fn: Callable, *specs: tf.TensorSpec) -> int:
    """Float operations the TF profiler counts in the graph of ``fn`` at ``specs``.

    ``tf.compat.v1.profiler.profile`` with ``ProfileOptionBuilder.float_operation()``
    counts 2 FLOPs per multiply-add of convolutions, transposed convolutions and matmuls
    (plus bias adds and a few elementwise ops; BatchNorm and ReLU count nothing).
    """
    concrete = tf.function(fn).get_concrete_function(*specs)
    opts = (tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
        .with_empty_output().build())
    info = tf.compat.v1.profiler.profile(concrete.graph, options=opts)
    return int(info.total_float_ops)


def forward_flops(model: tf.keras.Model, batch: int) -> int:
    """FLOPs of ``model``'s forward pass on ``batch`` images of its input shape."""
    shape = [batch] + list(model.input_shape[1:])
    return graph_flops(lambda x: model(x, training=False), tf.TensorSpec(shape, tf.float32))


@dataclass(frozen=True)
class ConvOptions:
    """The reference convolution: NHWC input [batch, size, size, channels] -> channels."""

    batch: int = 8
    size: int = 128
    channels: int = 128
    kernel: int = 3
    calls: int = 2  # convolutions per timed block

    def analytic_flops(self) -> int:
        """2 x multiply-adds of a 'same'-padded stride-1 convolution."""
        return 2 * self.batch * self.size ** 2 * self.channels ** 2 * self.kernel ** 2


def conv_case(conv: ConvOptions) -> tuple:
    """(Case running ``conv.calls`` convolutions, FLOPs of one convolution)."""
    x = tf.random.normal([conv.batch, conv.size, conv.size, conv.channels])
    w = tf.Variable(tf.random.normal([conv.kernel, conv.kernel, conv.channels, conv.channels],
                                     stddev=0.01))

    def convolve(inputs):
        return tf.nn.conv2d(inputs, w, strides=1, padding="SAME")

    fn = tf.function(convolve)
    flops = graph_flops(convolve, tf.TensorSpec(x.shape, tf.float32))
    fn(x).numpy()  # trace

    def run() -> None:
        y = None
        for _ in range(conv.calls):
            y = fn(x)
        y.numpy()

    return Case("conv_reference", run, ops=conv.calls, images=conv.calls * conv.batch), flops


def measure_flops(options: StepOptions = StepOptions(), conv: ConvOptions = ConvOptions(), *,
                  rounds: int = 5, steps_per_round: int = 2,
                  on_round: Optional[Callable[[int, Dict[str, float]], None]] = None) -> dict:
    """Count the joint step's FLOPs and time it next to the reference convolution.

    Model FLOPs: the profiler on each agent's forward pass at its batch size, the
    classifier agent's (encoder + classifier) and the segmentation agent's (encoder +
    decoder), so the encoder counts twice, as the joint step runs it twice; the step is
    ``TRAINING_TO_FORWARD`` x their sum. Achieved FLOP/s = step FLOPs / median step
    time. The machine's practical rate is measured in the same run, interleaved with the
    step: one large 3x3 convolution (``conv``, default batch 8, 128x128x128 -> 128
    channels) in a ``tf.function``, whose FLOPs the same profiler counts. Their ratio is
    the fraction of the practical conv throughput the training step reaches.

    Keys: ``machine``, ``load_after``, ``config``, ``conv`` (the reference's shape),
    ``forward_flops`` (``clf``, ``seg``: per agent, one forward pass at its batch),
    ``step_flops`` (3 x their sum), ``conv_flops`` (profiler) and ``conv_flops_analytic``,
    ``steps`` (``joint`` and ``conv_reference`` timing stats), ``achieved_flops_per_s``
    and ``practical_flops_per_s`` (wall medians), ``fraction`` (per-round achieved /
    practical, wall and ``cpu_fraction``).
    """
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="flops_") as model_dir:
        config = options.config(model_dir)
        bench = build_step_bench(config, modes=("joint",))
        system_clf = bench.trainers["joint"].clf_agent.model
        system_seg = bench.trainers["joint"].seg_agent.model
        n_clf, n_seg = int(bench.clf_batch[0].shape[0]), int(bench.seg_batch[0].shape[0])
        fwd = {"clf": forward_flops(system_clf, n_clf), "seg": forward_flops(system_seg, n_seg)}
        step_flops = TRAINING_TO_FORWARD * sum(fwd.values())
        logging.info("flops: forward clf %.3g, seg %.3g; warming up", fwd["clf"], fwd["seg"])
        warm_up(bench, options.warmup_steps)
        reference, conv_flops = conv_case(conv)
        cases = [step_case(bench, "joint", steps_per_round), reference]
        samples = run_interleaved(cases, rounds, on_round)
        stats = {case.name: case_stats(case, samples) for case in cases}

        def rates(seconds):
            step_s, conv_s = (per_op(seconds, case) for case in cases)
            achieved = [step_flops / s for s in step_s]
            practical = [conv_flops / s for s in conv_s]
            return achieved, practical

        achieved, practical = rates(samples.wall)
        cpu_achieved, cpu_practical = rates(samples.cpu)
        result = {"machine": machine, "config": describe_config(bench, options),
                  "conv": conv.__dict__, "rounds": rounds, "steps_per_round": steps_per_round,
                  "forward_flops": fwd, "step_flops": step_flops,
                  "training_to_forward": TRAINING_TO_FORWARD,
                  "conv_flops": conv_flops, "conv_flops_analytic": conv.analytic_flops(),
                  "steps": stats,
                  "achieved_flops_per_s": step_flops / (stats["joint"]["ms"]["median"] / 1e3),
                  "practical_flops_per_s": conv_flops / (
                      stats["conv_reference"]["ms"]["median"] / 1e3),
                  "fraction": paired_ratios(achieved, practical),
                  "cpu_fraction": paired_ratios(cpu_achieved, cpu_practical)}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def _g(flops: float) -> str:
    return f"{flops / 1e9:.3g} G"


def format_flops(result: dict) -> str:
    fwd, steps, c = result["forward_flops"], result["steps"], result["conv"]
    rows = [["joint step", _g(result["step_flops"]), steps["joint"]["ms"]["median"],
             format_range(steps["joint"]["ms"]), steps["joint"]["cpu_ms"]["median"],
             _g(result["achieved_flops_per_s"]) + "FLOP/s"],
            [f"conv {c['batch']}x{c['size']}x{c['size']}x{c['channels']} -> {c['channels']}, "
             f"{c['kernel']}x{c['kernel']}", _g(result["conv_flops"]),
             steps["conv_reference"]["ms"]["median"],
             format_range(steps["conv_reference"]["ms"]),
             steps["conv_reference"]["cpu_ms"]["median"],
             _g(result["practical_flops_per_s"]) + "FLOP/s"]]
    wall, cpu = result["fraction"], result["cpu_fraction"]
    return "\n".join([
        f"flops: {describe_step_setting(result['config'])}; {result['rounds']} rounds",
        describe_machine(result["machine"], result.get("load_after")), "",
        f"forward pass (TF profiler, float_operation): classifier agent {_g(fwd['clf'])}FLOP "
        f"at its batch, segmentation agent {_g(fwd['seg'])}FLOP at its batch",
        f"training step ~= {result['training_to_forward']:.0f} x forward (backward ~= 2 x "
        f"forward; an estimate, not a count) = {_g(result['step_flops'])}FLOP",
        f"reference conv: profiler {_g(result['conv_flops'])}FLOP, analytic "
        f"{_g(result['conv_flops_analytic'])}FLOP", "",
        format_table(["work", "FLOP", "wall ms (median)", "wall IQR ms", "CPU ms",
                      "FLOP/s (wall)"], rows), "",
        f"joint step reaches {wall['median']:.1%} of the practical conv FLOP/s (wall, IQR "
        f"{wall['q1']:.1%}-{wall['q3']:.1%}; CPU time {cpu['median']:.1%}); medians of "
        "per-round ratios"])


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    v = flags.FLAGS
    conv = ConvOptions(batch=v.conv_batch, size=v.conv_size, channels=v.conv_channels,
                       calls=v.conv_calls)
    result = measure_flops(step_options_from_flags(), conv, rounds=v.rounds,
                           steps_per_round=v.steps_per_round, on_round=log_round)
    print(format_flops(result))
    write_json(v.output_json, result)


def define_conv_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_integer("conv_batch", 8, "Reference conv: batch.", lower_bound=1, **fv)
    flags.DEFINE_integer("conv_size", 128, "Reference conv: spatial side.", lower_bound=1, **fv)
    flags.DEFINE_integer("conv_channels", 128, "Reference conv: in = out channels.",
                         lower_bound=1, **fv)
    flags.DEFINE_integer("conv_calls", 2, "Reference convs per timed block.", lower_bound=1,
                         **fv)


if __name__ == "__main__":
    define_step_flags(rounds=5, steps_per_round=2)
    define_conv_flags()
    app.run(main)
