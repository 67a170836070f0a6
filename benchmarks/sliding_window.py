"""What whole-image segmentation by overlapping tiles costs at each working resolution.

    python -m benchmarks.sliding_window --scale=small --sizes=128,256,512,768 --rounds=3

One photo segmented by half-overlapping tiles at each working size, and at the largest
with 4 and all tile positions per model call, interleaved; ratios against the smallest.
"""
from __future__ import annotations

from typing import List

import tensorflow as tf
from absl import app, flags

from benchmarks.common import (Case, case_stats, describe_machine, format_table, machine_info,
                               paired_ratios, run_interleaved)
from coopseg.config import override
from coopseg.models.registry import build_system
from coopseg.models.sliding_window import segment_probabilities, tile_starts
from experiments.scales import experiment

FLAGS = flags.FLAGS


def _segmenter(scale: str, overrides) -> tf.keras.Model:
    config = experiment(scale)
    for item in overrides:
        override(config, *item.split("=", 1))
    return build_system(config.validate()).seg_model


def measure(scale: str = "small", sizes=(128, 256, 512, 768), rounds: int = 3,
            overrides=()) -> dict:
    """Seconds per photo and tiles/s of ``segment_probabilities`` at each working size
    (an untrained segmenter: the cost does not depend on its weights)."""
    model = _segmenter(scale, overrides)
    tile = int(model.input_shape[1])
    sizes = sorted(s for s in sizes if s >= tile)
    functions, cases, tiles = {}, [], {}
    largest = sizes[-1]
    positions = len(tile_starts(largest, tile)) ** 2
    variants = [(size, 1) for size in sizes] + [(largest, k) for k in (4, positions)
                                                 if k > 1]
    for size, per_call in variants:
        name = f"{size}px" + (f" x{per_call}/call" if per_call > 1 else "")
        image = tf.random.stateless_normal([1, size, size, 3], [size, per_call])
        function = tf.function(lambda x, k=per_call: segment_probabilities(
            model, x, tiles_per_call=k))
        function(image).numpy()  # trace and warm up outside the timing
        functions[name] = (function, image)
        tiles[name] = len(tile_starts(size, tile)) ** 2
        cases.append(Case(name, run=lambda n=name: functions[n][0](functions[n][1]).numpy(),
                          ops=1, images=1))
    samples = run_interleaved(cases, rounds)
    base = cases[0].name
    rows = []
    for case in cases:
        stats = case_stats(case, samples)
        ratio = paired_ratios(samples.wall[case.name], samples.wall[base])["median"]
        pixels = (int(case.name.split("px")[0]) / int(base.split("px")[0])) ** 2
        rows.append({"case": case.name, "tiles": tiles[case.name],
                     "seconds_per_photo": stats["ms"]["median"] / 1000.0,
                     "tiles_per_s": tiles[case.name] / (stats["ms"]["median"] / 1000.0),
                     "time_ratio": ratio, "pixel_ratio": pixels})
    return {"tile": tile, "rows": rows, "machine": machine_info()}


def main(argv: List[str]) -> None:
    del argv
    result = measure(FLAGS.scale, [int(s) for s in FLAGS.sizes], FLAGS.rounds, FLAGS.set)
    print(f"Segmenter input (tile) {result['tile']} px, half-overlapping tiles, one photo "
          f"per call; median of {FLAGS.rounds} interleaved rounds.")
    print(format_table(
        ["case", "tiles", "s / photo", "tiles / s", "time vs first", "pixels vs first"],
        [[r["case"], r["tiles"], f"{r['seconds_per_photo']:.3f}", f"{r['tiles_per_s']:.1f}",
          f"{r['time_ratio']:.2f}x", f"{r['pixel_ratio']:.1f}x"] for r in result["rows"]]))
    print(describe_machine(result["machine"]))


if __name__ == "__main__":
    flags.DEFINE_string("scale", "small", "Experiment scale whose segmenter is timed.")
    flags.DEFINE_list("sizes", ["128", "256", "512", "768"], "Working sizes to time.")
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
    flags.DEFINE_multi_string("set", [], "Config overrides field.path=value.")
    app.run(main)
