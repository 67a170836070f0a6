"""How the joint step's time grows with input size and batch size, and what XLA does.

    python -m benchmarks.scaling                       # paper model, 224/320/448 px, seg batch 1/2/4
    python -m benchmarks.scaling --scale=small --input_sizes=128 --seg_batches=4 --compare_jit

Per image vs base = (size / base size)^2 means cost linear in pixels (benchmarks/README.md).
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from absl import app, flags, logging

from benchmarks.common import (case_stats, describe_machine, format_range, format_table,
                               machine_info, paired_ratios, per_op, run_interleaved)
from benchmarks.step_cost import (StepOptions, build_step_bench, define_step_flags,
                                  describe_config, describe_step_setting, log_round,
                                  step_case, step_options_from_flags, warm_up, write_json)

# The clf batch is seg batch x --batch_ratio; --batch_ratio=0 (the default) means this,
# not the paper's 32, so the sweep finishes in a few minutes on 2 cores.
DEFAULT_BATCH_RATIO = 2


@dataclass(frozen=True)
class Setting:
    """One row: input size, seg batch, XLA on/off."""

    input_size: int
    seg_batch: int
    jit_compile: bool = False

    @property
    def name(self) -> str:
        return f"{self.input_size}px/seg{self.seg_batch}" + ("/jit" if self.jit_compile else "")


def sweep(input_sizes: Sequence[int], seg_batches: Sequence[int],
          compare_jit: bool) -> List[Setting]:
    """Base first, then the other sizes at the base batch, the other batches at the base
    size, then the base with XLA."""
    if not input_sizes or not seg_batches:
        raise ValueError("need at least one input size and one seg batch")
    base = Setting(input_sizes[0], seg_batches[0])
    rows = [base] + [Setting(s, base.seg_batch) for s in input_sizes[1:]]
    rows += [Setting(base.input_size, b) for b in seg_batches[1:]]
    if compare_jit:
        rows.append(Setting(base.input_size, base.seg_batch, jit_compile=True))
    return rows


def measure_scaling(options: StepOptions, input_sizes: Sequence[int] = (224, 320, 448),
                    seg_batches: Sequence[int] = (1, 2, 4), compare_jit: bool = True, *,
                    rounds: int = 3, steps_per_round: int = 1,
                    on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                    ) -> dict:
    """Time the joint step at every setting of the sweep, interleaved.

    One ``StepBench`` per setting (the model's input shape is fixed at build time), all
    timed side by side in interleaved rounds: the input-size sweep at the first seg
    batch, the batch sweep at the first input size, and (``compare_jit``) the base
    setting with ``run.jit_compile`` on. XLA's compile time is not timed (warm-up) but
    is long on a CPU: over 10 minutes for the paper-shape joint step on 2 loaded cores,
    hence off by default in the CLI; compare at ``--scale=small``. Every row is also
    given as a per-round ratio to the base row (first size, first batch): step time, and
    time per image (step time / images per step): cost linear in pixels shows as a
    per-image ratio of (size / base size)^2; a per-image ratio below 1 along the batch
    sweep means larger batches use the cores better (1 = no gain from batching).

    Keys: ``machine``, ``load_after``, ``config`` (the base setting), ``rounds``,
    ``steps_per_round``, ``rows`` (per setting, in sweep order: ``input_size``,
    ``seg_batch``, ``clf_batch``, ``jit_compile``, ``stats`` (``case_stats``),
    ``ms_per_image``, ``step_ratio`` / ``image_ratio`` (per-round ratios to the base
    row, wall), ``cpu_step_ratio``), ``jit_vs_off`` (the jit row's step ratio, if any).
    """
    machine = machine_info()
    settings = sweep(input_sizes, seg_batches, compare_jit)
    with tempfile.TemporaryDirectory(prefix="scaling_") as model_dir:
        benches, cases = {}, []
        for setting in settings:
            opts = dataclasses.replace(options, input_size=setting.input_size,
                                       seg_batch=setting.seg_batch,
                                       jit_compile=setting.jit_compile)
            bench = build_step_bench(opts.config(os.path.join(model_dir, setting.name)),
                                     modes=("joint",))
            logging.info("scaling: tracing %s", setting.name)
            warm_up(bench, options.warmup_steps)
            benches[setting.name] = bench
            cases.append(step_case(bench, "joint", steps_per_round, name=setting.name))
        samples = run_interleaved(cases, rounds, on_round)
        base = cases[0]
        base_images = base.images / base.ops
        rows = []
        for setting, case in zip(settings, cases):
            bench = benches[setting.name]
            stats = case_stats(case, samples)
            images = case.images / case.ops
            step_ratio = paired_ratios(per_op(samples.wall, case), per_op(samples.wall, base))
            per_image = [r * base_images / images for r in step_ratio["samples"]]
            rows.append({"name": setting.name, "input_size": setting.input_size,
                         "seg_batch": setting.seg_batch,
                         "clf_batch": bench.config.train.clf_agent().batch_size,
                         "jit_compile": setting.jit_compile, "stats": stats,
                         "ms_per_image": stats["ms"]["median"] / images,
                         "step_ratio": step_ratio,
                         "image_ratio": paired_ratios(per_image, [1.0] * len(per_image)),
                         "cpu_step_ratio": paired_ratios(per_op(samples.cpu, case),
                                                         per_op(samples.cpu, base))})
        result = {"machine": machine, "config": describe_config(benches[base.name], options),
                  "rounds": rounds, "steps_per_round": steps_per_round, "rows": rows,
                  "jit_vs_off": next((r["step_ratio"] for r in rows if r["jit_compile"]), None)}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_scaling(result: dict) -> str:
    rows = [[r["name"], r["clf_batch"] + r["seg_batch"], r["stats"]["ms"]["median"],
             format_range(r["stats"]["ms"]), r["stats"]["cpu_ms"]["median"], r["ms_per_image"],
             f"{r['step_ratio']['median']:.2f}x", f"{r['cpu_step_ratio']['median']:.2f}x",
             f"{r['image_ratio']['median']:.2f}x"] for r in result["rows"]]
    lines = [f"scaling (joint step), base {describe_step_setting(result['config'])}; "
             f"{result['rounds']} rounds x {result['steps_per_round']} steps per setting",
             describe_machine(result["machine"], result.get("load_after")), "",
             format_table(["setting", "images/step", "wall ms/step", "wall IQR ms",
                           "CPU ms/step", "wall ms/image", "step vs base (wall)",
                           "step vs base (CPU)", "per image vs base (wall)"], rows), "",
             "ratios are medians of per-round ratios to the first row"]
    if result["jit_vs_off"] is not None:
        j = result["jit_vs_off"]
        lines.append(f"jit_compile on / off (base setting): {j['median']:.3f} (IQR "
                     f"{format_range(j)}); < 1 means XLA is faster")
    return "\n".join(lines)


def _ints(values: Sequence[str]) -> List[int]:
    return [int(v) for v in values]


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    v = flags.FLAGS
    options = step_options_from_flags()
    options = dataclasses.replace(options, batch_ratio=options.batch_ratio or DEFAULT_BATCH_RATIO)
    result = measure_scaling(options, _ints(v.input_sizes), _ints(v.seg_batches),
                             v.compare_jit, rounds=v.rounds, steps_per_round=v.steps_per_round,
                             on_round=log_round)
    print(format_scaling(result))
    write_json(v.output_json, result)


if __name__ == "__main__":
    define_step_flags(rounds=3, steps_per_round=1, scale="paper")
    flags.DEFINE_list("input_sizes", ["224", "320", "448"], "Input sizes; the first is the base.")
    flags.DEFINE_list("seg_batches", ["1", "2", "4"], "Seg batch sizes; the first is the base.")
    flags.DEFINE_bool("compare_jit", False, "Add the base setting with jit_compile on (XLA "
                      "compiling the paper-shape step took > 10 min on 2 loaded cores).")
    app.run(main)
