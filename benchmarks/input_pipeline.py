"""Can the input pipelines keep up with the cooperative step?

    python -m benchmarks.input_pipeline --scale=small
    python -m benchmarks.input_pipeline --scale=small --data_dir=data/synthetic  # demo's set

Read the lead: pipeline images/s over what the joint step consumes (benchmarks/README.md).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import tensorflow as tf
from absl import app, flags, logging

from benchmarks.common import (Case, Samples, case_stats, describe_machine, format_range,
                               format_table, machine_info, paired_ratios, per_op, quartiles,
                               run_interleaved)
from benchmarks.step_cost import (StepBench, StepOptions, build_step_bench, define_step_flags,
                                  describe_config, describe_step_setting, log_round, step_case,
                                  step_options_from_flags, wait_for, warm_up, write_json)
from data_pipelines.conversion import ConvertOptions, convert_split
from coopseg.config import ConfigError, ExperimentConfig
from coopseg.training.tasks import build_inputs
from data_pipelines.synthetic import MANIFEST, ensure_dataset

SOURCES = ("jpeg", "tfrecord")
# Graded and mask images generated per scale when no --data_dir set is given.
DEFAULT_COUNTS = {"tiny": (32, 16), "small": (320, 96), "paper": (640, 160)}


@dataclass(frozen=True)
class DataOptions:
    """Where the benchmark data lives and how much of it; 0 / "" = defaults."""

    work_dir: str = ""  # "" = <tmp>/coopseg_benchmarks/<scale>; holds the set and TFRecords
    data_dir: str = ""  # an existing synthetic set to reuse as is; "" = <work_dir>/synthetic
    source_size: int = 0  # side of the generated JPEGs; 0 = the scale's data.resize_size
    num_graded: int = 0
    num_masks: int = 0


@dataclass
class BenchData:
    """The JPEG folders, their TFRecord conversions and the number of images in each."""

    graded_dir: str
    masks_dir: str
    graded_tfrecords: str
    masks_tfrecords: str
    num_graded: int
    num_masks: int
    source_size: int


def synthetic_set(options: DataOptions, config: ExperimentConfig, scale: str) -> dict:
    """The manifest of the benchmark's synthetic set, reusing one already on disk."""
    work_dir = options.work_dir or os.path.join(tempfile.gettempdir(), "coopseg_benchmarks",
                                                scale)
    data_dir = options.data_dir or os.path.join(work_dir, "synthetic")
    manifest_path = os.path.join(data_dir, MANIFEST)
    if options.data_dir and os.path.exists(manifest_path):
        # Reuse as made (e.g. the demo's set): asking for other counts would regenerate it.
        with open(manifest_path, encoding="utf-8") as f:
            made = json.load(f)
        counts, size, seed = made["counts"], made["image_size"], made["seed"]
    else:
        default_graded, default_masks = DEFAULT_COUNTS[scale]
        counts = {"graded_train": options.num_graded or default_graded, "graded_val": 0,
                  "lesions_train": options.num_masks or default_masks, "lesions_val": 0}
        size, seed = options.source_size or config.data.resize_size, 0
    manifest = ensure_dataset(data_dir, num_graded_train=counts["graded_train"],
                              num_graded_val=counts["graded_val"],
                              num_masks_train=counts["lesions_train"],
                              num_masks_val=counts["lesions_val"], image_size=size, seed=seed,
                              progress=False)
    return {**manifest, "data_dir": data_dir, "work_dir": work_dir}


def convert(options: ConvertOptions) -> int:
    """Convert (or resume) one split; a conversion of other input is replaced. Returns
    the number of records."""
    try:
        manifest = convert_split(options, progress_stream=sys.stderr)
    except ConfigError as err:  # converted earlier from another set or with other options
        logging.info("Reconverting %s: %s", options.output, err)
        manifest = convert_split(dataclasses.replace(options, overwrite=True),
                                 progress_stream=sys.stderr)
    return manifest["splits"][options.split]["count"]


def prepare_data(options: DataOptions, config: ExperimentConfig, scale: str) -> BenchData:
    """Generate (or reuse) the synthetic JPEG set and convert it to TFRecords."""
    manifest = synthetic_set(options, config, scale)
    data_dir, work_dir = manifest["data_dir"], manifest["work_dir"]
    graded_dir = os.path.join(data_dir, "graded_train")
    masks_dir = os.path.join(data_dir, "lesions_train")
    tfrecord_dir = os.path.join(work_dir, f"tfrecords_{config.data.resize_size}")
    size = config.data.resize_size  # what the pipeline resizes to (paper: 256)
    num_graded = convert(ConvertOptions(format="eyepacs", input=graded_dir, size=size,
                                        output=os.path.join(tfrecord_dir, "graded")))
    num_masks = convert(ConvertOptions(format="generic", input=masks_dir, size=size,
                                       output=os.path.join(tfrecord_dir, "masks"),
                                       class_names=tuple(config.data.class_names)))
    return BenchData(graded_dir, masks_dir, os.path.join(tfrecord_dir, "graded"),
                     os.path.join(tfrecord_dir, "masks"), num_graded, num_masks,
                     manifest["image_size"])


def pipeline_inputs(config: ExperimentConfig, data: BenchData, source: str, affine: bool):
    """The training datasets ``coopseg-train`` would build for this source."""
    folder = source == "jpeg"
    d = dataclasses.replace(
        config.data, affine=affine, graded_val="", masks_val="",
        graded_format="eyepacs" if folder else "tfrecord",
        graded_train=data.graded_dir if folder else data.graded_tfrecords,
        masks_format="generic" if folder else "tfrecord",
        masks_train=data.masks_dir if folder else data.masks_tfrecords)
    cfg = dataclasses.replace(config, data=d, train=dataclasses.replace(config.train,
                                                                       mode="joint"))
    return build_inputs(cfg)


class FreshIterators:
    """Fresh iterators of some datasets, each read one epoch untimed (``setup``), dropped
    again after the timed block (``teardown``) so no background work outlives it.

    The benchmark set is small, so every timed block is aligned to whole epochs: the
    untimed epoch fills the shuffle buffer, which is larger than the set and so holds a
    whole epoch; the timed block then reads ``epochs_per_round`` epochs. Deleting the
    iterator after the block stops its background threads before the next case runs.
    """

    def __init__(self, datasets: Dict[str, tf.data.Dataset], epoch_batches: Dict[str, int]):
        self.datasets, self.epoch_batches = datasets, epoch_batches
        self.iterators: Dict[str, object] = {}

    def setup(self) -> None:
        self.teardown()
        for name, dataset in self.datasets.items():
            self.iterators[name] = iter(dataset)
            for _ in range(self.epoch_batches[name]):
                next(self.iterators[name])

    def teardown(self) -> None:
        self.iterators.clear()

    def next(self, name: str):
        return next(self.iterators[name])


def pipeline_case(name: str, dataset: tf.data.Dataset, batch_size: int, epoch_images: int,
                  epochs: int) -> Case:
    """``epochs`` epochs' worth of batches of one pipeline."""
    iterators = FreshIterators({name: dataset}, {name: math.ceil(epoch_images / batch_size)})
    batches = math.ceil(epochs * epoch_images / batch_size)

    def run() -> None:
        for _ in range(batches):
            iterators.next(name)

    return Case(name, run, ops=batches, images=batches * batch_size,
                setup=iterators.setup, teardown=iterators.teardown)


def fed_step_case(name: str, bench: StepBench, inputs, data: BenchData, epochs: int) -> Case:
    """Joint steps on batches from the pipelines, ``epochs`` epochs of graded images."""
    n_clf, n_seg = int(bench.clf_batch[0].shape[0]), int(bench.seg_batch[0].shape[0])
    iterators = FreshIterators({"clf": inputs.clf_train, "seg": inputs.seg_train},
                               {"clf": math.ceil(data.num_graded / n_clf),
                                "seg": math.ceil(data.num_masks / n_seg)})
    steps = math.ceil(epochs * data.num_graded / n_clf)
    traced = []

    def step() -> Dict[str, tf.Tensor]:
        return bench.step("joint", iterators.next("clf"), iterators.next("seg"))

    def setup() -> None:
        iterators.setup()
        if not traced:  # batches whose shapes differ from the tensors' would retrace
            wait_for(step())
            traced.append(True)

    def run() -> None:
        outputs = {}
        for _ in range(steps):
            outputs = step()
        wait_for(outputs)

    return Case(name, run, ops=steps, images=steps * (n_clf + n_seg), setup=setup,
                teardown=iterators.teardown)


def _suffix(source: str, affine: bool) -> str:
    return f"{source}{'+affine' if affine else ''}"


def summarize(samples: Samples, cases: Dict[str, Case], n_clf: int, n_seg: int) -> dict:
    """Statistics and leads from the interleaved samples (see ``measure_input_pipeline``).

    Leads are per-round ratios of seconds: pipeline lead = step time / batch time (a
    batch holds what one step consumes of that kind); "both" lead = step time /
    (graded batch time + mask batch time). ``lead`` uses wall time; ``cpu_lead`` uses
    process CPU time, i.e. how the work compares, whatever else runs on the machine.
    """
    step = cases["joint step (tensors)"]
    step_s = {"wall": per_op(samples.wall, step), "cpu": per_op(samples.cpu, step)}
    result: dict = {"step": case_stats(step, samples), "pipelines": {}, "both": {}, "fed": {}}
    for source in SOURCES:
        for affine in (False, True):
            suffix = _suffix(source, affine)
            batch_s = {}
            for kind in ("graded", "masks"):
                case = cases[f"{kind}/{suffix}"]
                batch_s[kind] = {"wall": per_op(samples.wall, case),
                                 "cpu": per_op(samples.cpu, case)}
                result["pipelines"][case.name] = {
                    "kind": kind, "source": source, "affine": affine,
                    **case_stats(case, samples),
                    "lead": paired_ratios(step_s["wall"], batch_s[kind]["wall"]),
                    "cpu_lead": paired_ratios(step_s["cpu"], batch_s[kind]["cpu"])}
            inputs_s = {clock: [g + m for g, m in zip(batch_s["graded"][clock],
                                                      batch_s["masks"][clock])]
                        for clock in ("wall", "cpu")}
            result["both"][suffix] = {
                "source": source, "affine": affine,
                "images_per_s": (n_clf + n_seg) / quartiles(inputs_s["wall"])["median"],
                "lead": paired_ratios(step_s["wall"], inputs_s["wall"]),
                "cpu_lead": paired_ratios(step_s["cpu"], inputs_s["cpu"])}
        fed = cases.get(f"fed/{source}")
        if fed is not None:
            result["fed"][source] = {
                **case_stats(fed, samples),
                "vs_tensors": paired_ratios(per_op(samples.wall, fed), step_s["wall"]),
                "cpu_vs_tensors": paired_ratios(per_op(samples.cpu, fed), step_s["cpu"])}
    result["min_lead"] = min(entry["lead"]["median"] for entry in result["both"].values())
    return result


def measure_input_pipeline(step: StepOptions = StepOptions(), data: DataOptions = DataOptions(),
                           *, rounds: int = 3, steps_per_round: int = 0,
                           epochs_per_round: int = 1, fed: bool = True,
                           on_round: Optional[Callable[[int, Dict[str, float]], None]] = None
                           ) -> dict:
    """Time the pipelines next to the joint step; returns the results dict.

    Measured in one run, interleaved round by round (``common.run_interleaved``):

    - the two training pipelines exactly as ``coopseg-train`` builds them
      (``coopseg.training.tasks.build_inputs``): graded images -> classifier batches and
      mask set -> segmenter batches, read from the raw JPEG folders (EyePACS layout,
      generic mask layout) or from TFRecords ``coopseg-convert`` made of the same
      folders, with the paper's augmentation, without and with the TEFLA affine warp;
    - the joint cooperative step on random tensors (``step_cost``): what training consumes;
    - the joint step fed by the pipelines themselves (``fed``): on a 2-core machine the
      pipeline and the step share the cores, so this is the end-to-end answer. Read its
      CPU time against the tensor step's: when other jobs crowd the machine, wall time
      favours the case with more threads (tf.data's workers win the fed step a larger
      share of the cores), so the fed step can even look faster in wall time.

    *Lead* = pipeline images/s / images/s the joint step consumes of that kind
    (classifier images for the graded pipeline, segmenter images for the mask
    pipeline), per round, then the median. "Both" rows time one step's worth of inputs
    from the two pipelines (``clf_batch / graded rate + seg_batch / mask rate``) against
    one joint step.

    Keys: ``machine``, ``load_after``, ``config`` (step setting, data sizes and paths),
    ``rounds``, ``epochs_per_round``, ``steps_per_round``, ``step`` (joint step on
    tensors, ``steps_per_round`` of them per block (0: the fed block's length), as
    ``common.case_stats``), ``pipelines`` (per ``<kind>/<source>[+affine]``:
    kind, source, affine, stats, ``lead`` and ``cpu_lead`` quartiles), ``both`` (per
    ``<source>[+affine]``: ``images_per_s``, ``lead``, ``cpu_lead``), ``fed`` (per
    source: stats, ``vs_tensors`` and ``cpu_vs_tensors``, quartiles of fed step time /
    tensor step time in wall and CPU time; empty unless ``fed``), ``min_lead``
    (smallest median lead in ``both``), ``all_finite``.
    """
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="input_pipeline_") as model_dir:
        config = step.config(model_dir)
        bench_data = prepare_data(data, config, step.scale)
        bench = build_step_bench(config, modes=("joint",))
        logging.info("input_pipeline: warming up (tracing) the joint step")
        warm_up(bench, step.warmup_steps)
        n_clf, n_seg = config.train.clf_agent().batch_size, config.train.seg.batch_size
        # As long a block as the fed step's, so a first-step-after-a-switch cost weighs
        # the same on both (it showed as a fed step "faster" than the tensor step).
        steps_per_round = steps_per_round or math.ceil(
            epochs_per_round * bench_data.num_graded / n_clf)
        cases = [dataclasses.replace(step_case(bench, "joint", steps_per_round),
                                     name="joint step (tensors)")]
        for source in SOURCES:
            for affine in (False, True):
                inputs = pipeline_inputs(config, bench_data, source, affine)
                suffix = _suffix(source, affine)
                cases.append(pipeline_case(f"graded/{suffix}", inputs.clf_train, n_clf,
                                           bench_data.num_graded, epochs_per_round))
                cases.append(pipeline_case(f"masks/{suffix}", inputs.seg_train, n_seg,
                                           bench_data.num_masks, epochs_per_round))
                if fed and affine == config.data.affine:  # the run's own augmentation
                    cases.append(fed_step_case(f"fed/{source}", bench, inputs, bench_data,
                                               epochs_per_round))
        samples = run_interleaved(cases, rounds, on_round)
        setting = describe_config(bench, step)
        all_finite = bench.all_finite()
    return {
        "machine": machine,
        "config": {**setting, "affine_default": config.data.affine,
                   "data_dir": os.path.dirname(bench_data.graded_dir),
                   "graded_tfrecords": bench_data.graded_tfrecords,
                   "masks_tfrecords": bench_data.masks_tfrecords,
                   "num_graded": bench_data.num_graded, "num_masks": bench_data.num_masks,
                   "source_size": bench_data.source_size,
                   "resize_size": config.data.resize_size},
        "rounds": rounds, "epochs_per_round": epochs_per_round,
        "steps_per_round": steps_per_round,
        **summarize(samples, {case.name: case for case in cases}, n_clf, n_seg),
        "all_finite": all_finite,
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


# --- report ----------------------------------------------------------------------------

def format_input_pipeline(result: dict) -> str:
    """The results as printable tables and the headline lead."""
    cfg, step = result["config"], result["step"]
    pipeline_rows = [[name, int(p["images_per_op"]), p["ms"]["median"], format_range(p["ms"]),
                      p["cpu_ms"]["median"], p["images_per_s"], f"{p['lead']['median']:.2f}x",
                      format_range(p["lead"]), f"{p['cpu_lead']['median']:.2f}x"]
                     for name, p in result["pipelines"].items()]
    both_rows = [[suffix, b["images_per_s"], f"{b['lead']['median']:.2f}x",
                  format_range(b["lead"]), f"{b['cpu_lead']['median']:.2f}x"]
                 for suffix, b in result["both"].items()]
    lines = [
        f"input_pipeline: {describe_step_setting(cfg)}",
        f"data: {cfg['num_graded']} graded + {cfg['num_masks']} mask images, JPEG "
        f"{cfg['source_size']} px in {cfg['data_dir']}; TFRecords (PNG, {cfg['resize_size']} "
        f"px) by coopseg-convert; {result['rounds']} rounds, {result['epochs_per_round']} "
        f"epoch(s) per pipeline per round",
        describe_machine(result["machine"], result.get("load_after")), "",
        f"joint step on tensors: {step['ms']['median']:.1f} ms/step "
        f"(IQR {format_range(step['ms'])}; CPU {step['cpu_ms']['median']:.1f} ms), "
        f"{step['images_per_s']:.1f} images/s ({cfg['clf_batch']} clf + {cfg['seg_batch']} seg "
        "per step)", "",
        format_table(["pipeline", "batch", "ms/batch", "IQR ms", "CPU ms/batch", "images/s",
                      "lead vs step", "lead IQR", "CPU lead"], pipeline_rows), "",
        "Both pipelines, one joint step's inputs (1 graded + 1 mask batch):",
        format_table(["source", "images/s", "lead vs joint step", "lead IQR", "CPU lead"],
                     both_rows),
    ]
    if result["fed"]:
        fed_rows = [["tensors (no pipeline)", step["ms"]["median"], format_range(step["ms"]),
                     step["cpu_ms"]["median"], step["images_per_s"], "1x", "", "1x"]]
        fed_rows += [[f"pipelines ({source})", f["ms"]["median"], format_range(f["ms"]),
                      f["cpu_ms"]["median"], f["images_per_s"],
                      f"{f['vs_tensors']['median']:.2f}x", format_range(f["vs_tensors"]),
                      f"{f['cpu_vs_tensors']['median']:.2f}x"]
                     for source, f in result["fed"].items()]
        lines += ["", "Joint step fed by the pipelines (augmentation "
                  f"{'with' if cfg['affine_default'] else 'without'} affine, as configured):",
                  format_table(["joint step fed by", "ms/step", "IQR ms", "CPU ms/step",
                                "images/s", "wall vs tensors", "IQR", "CPU vs tensors"],
                               fed_rows)]
    lines += ["", f"The input pipelines lead the joint step by at least "
              f"{result['min_lead']:.2f}x (median over rounds, slowest source/augmentation)."]
    if result["min_lead"] < 1.0:
        lines.append("WARNING: a pipeline is slower than the step; it limits training.")
    return "\n".join(lines)


# --- command line ----------------------------------------------------------------------

def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    fv = {"flag_values": flag_values}
    define_step_flags(flag_values, rounds=3, steps_per_round=0,
                      steps_help="Joint steps on tensors per round; 0 = as many as the fed "
                      "step takes for --epochs_per_round epochs of graded images.")
    flags.DEFINE_string("work_dir", "", "Holds the generated set and its TFRecords; default "
                        "<tmp>/coopseg_benchmarks/<scale> (reused by later runs).", **fv)
    flags.DEFINE_string("data_dir", "", "An existing synthetic set to read instead (used as "
                        "is, e.g. the demo's data/synthetic).", **fv)
    flags.DEFINE_integer("source_size", 0, "Side of the generated JPEGs; 0 = the scale's "
                         "resize size (what coopseg-train generates).", lower_bound=0, **fv)
    flags.DEFINE_integer("num_graded", 0, "Graded images to generate; 0 = per scale.",
                         lower_bound=0, **fv)
    flags.DEFINE_integer("num_masks", 0, "Mask images to generate; 0 = per scale.",
                         lower_bound=0, **fv)
    flags.DEFINE_integer("epochs_per_round", 1, "Epochs each pipeline reads per timed block.",
                         lower_bound=1, **fv)
    flags.DEFINE_bool("fed", True, "Also time the joint step fed by the pipelines.", **fv)


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    f = flags.FLAGS
    data = DataOptions(work_dir=f.work_dir, data_dir=f.data_dir, source_size=f.source_size,
                       num_graded=f.num_graded, num_masks=f.num_masks)
    result = measure_input_pipeline(step_options_from_flags(), data, rounds=f.rounds,
                                    steps_per_round=f.steps_per_round,
                                    epochs_per_round=f.epochs_per_round, fed=f.fed,
                                    on_round=log_round)
    print(format_input_pipeline(result))
    write_json(f.output_json, result)


if __name__ == "__main__":
    define_flags()
    app.run(main)
