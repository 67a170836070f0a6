"""What grading a folder costs: coopseg-predict's Python path vs the bytes signature.

    python -m benchmarks.predict_throughput --scale=paper --photos=16 --rounds=3

Five cases timed side by side in interleaved rounds (``measure_predict``); ratios are
per round against ``predict``, then the median, wall and CPU (benchmarks/README.md).
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from benchmarks.common import (Case, case_stats, describe_machine, format_ratios, format_table,
                               machine_info, paired_ratios, per_op, run_interleaved)
from benchmarks.step_cost import log_round, write_json
from coopseg.config import override
from coopseg.models.registry import build_system
from coopseg.serving.export import BYTES_SIGNATURE, export_saved_model
from coopseg.serving.photo_preprocessing import PhotoPreprocessing
from coopseg.serving.predict_folder import (PredictOptions, list_inputs, predict_folder,
                                            prepare_photo)
from coopseg.serving.predictor import load_predictor
from data_pipelines.synthetic import render_fundus
from experiments.scales import experiment


def write_photos(folder: str, count: int, photo_size: int) -> List[str]:
    """``count`` synthetic fundus JPEGs: the disc in a 4:3 black frame."""
    paths = []
    for i in range(count):
        disc, _ = render_fundus(i, i % 5, photo_size)
        height, width = photo_size + photo_size // 8, photo_size * 4 // 3
        frame = np.zeros((height, width, 3), np.uint8)
        top, left = (height - photo_size) // 2, (width - photo_size) // 2
        frame[top:top + photo_size, left:left + photo_size] = disc
        paths.append(os.path.join(folder, f"{i:04d}.jpg"))
        cv2.imwrite(paths[-1], frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    return paths


def measure_predict(scale: str = "small", photos: int = 16, photo_size: int = 512,
                    batch_size: int = 8, rounds: int = 3, overrides=(),
                    on_round: Optional[Callable[[int, Dict[str, float]], None]] = None) -> dict:
    """Time five ways of grading the same photos; returns rows and per-round ratios.

    A SavedModel of the experiment's model (untrained weights: the cost does not depend
    on them) and ``photos`` synthetic fundus photos (JPEG, ``photo_size`` px disc in a
    wider black frame, like a camera's output) are made in a temp dir; the model is
    exported as one trained on retina-cropped TFRecords, so every path crops. Each timed
    block grades every photo:

    - ``predict``: ``predict_folder`` as ``coopseg-predict`` runs it (OpenCV decode and
      retina crop, resize, network, CSV, overlay PNGs);
    - ``predict_no_overlays``: the same with ``--nooverlays``;
    - ``predict_tta``: the same with ``--tta`` (two network passes);
    - ``serving_bytes``: the file bytes through the SavedModel's bytes signature
      (in-graph decode, crop, resize, network), in batches of ``batch_size``;
    - ``network_only``: the float signature on photos prepared beforehand (the floor).
    """

    machine = machine_info()
    config = experiment(scale)
    for item in overrides:
        override(config, *item.split("=", 1))
    config.validate()
    with tempfile.TemporaryDirectory(prefix="predict_bench_") as tmp:
        folder = os.path.join(tmp, "photos")
        os.makedirs(folder)
        paths = write_photos(folder, photos, photo_size)
        # As for a model trained on coopseg-convert's retina-cropped TFRecords.
        export = export_saved_model(build_system(config), config, os.path.join(tmp, "export"),
                                    preprocessing=PhotoPreprocessing(crop_retina=True))
        predictor = load_predictor(export)
        inputs = list_inputs([folder])
        encoded = [open(p, "rb").read() for p in paths]
        signature = predictor.keep_alive.signatures[BYTES_SIGNATURE]
        prepared = np.stack([prepare_photo(p, predictor.input_size,
                                           predictor.preprocessing).model_input for p in paths])

        def folder_case(name: str, **changes) -> Case:
            options = PredictOptions(batch_size=batch_size, **changes)
            out_dir = os.path.join(tmp, name)
            return Case(name, lambda: predict_folder(predictor, inputs, out_dir, options),
                        ops=1, images=photos)

        def serve_bytes() -> None:
            for start in range(0, photos, batch_size):
                signature(image_bytes=tf.constant(encoded[start:start + batch_size]))["grade"].numpy()

        def network_only() -> None:
            for start in range(0, photos, batch_size):
                predictor(prepared[start:start + batch_size])

        cases = [folder_case("predict"), folder_case("predict_no_overlays", overlays=False),
                 folder_case("predict_tta", flip_tta=True),
                 Case("serving_bytes", serve_bytes, ops=1, images=photos),
                 Case("network_only", network_only, ops=1, images=photos)]
        for case in cases:  # trace every function and warm the caches, untimed
            case.run()
        samples = run_interleaved(cases, rounds, on_round)
    reference = cases[0]
    rows = [{"name": case.name, "stats": case_stats(case, samples),
             "wall_ratio": paired_ratios(per_op(samples.wall, case), per_op(samples.wall, reference)),
             "cpu_ratio": paired_ratios(per_op(samples.cpu, case), per_op(samples.cpu, reference))}
            for case in cases]
    return {"machine": machine, "load_after": [round(x, 2) for x in os.getloadavg()],
            "config": {"scale": scale, "input_size": config.model.input_size, "photos": photos,
                       "photo_size": photo_size, "batch_size": batch_size},
            "rounds": rounds, "rows": rows}


def format_predict(result: dict) -> str:
    """The rows as a table (photos/s, ms per photo, ratios to ``predict``)."""
    c = result["config"]
    head = (f"{describe_machine(result['machine'], result['load_after'])}\n"
            f"scale {c['scale']} ({c['input_size']} px model), {c['photos']} JPEG photos with a "
            f"{c['photo_size']} px disc, batch {c['batch_size']}, {result['rounds']} rounds\n")
    table = format_table(
        ["case", "photos/s", "ms/photo", "vs predict"],
        [[r["name"], r["stats"]["images_per_s"],
          r["stats"]["ms"]["median"] / r["stats"]["images_per_op"],
          format_ratios(r["wall_ratio"], r["cpu_ratio"])] for r in result["rows"]])
    return head + table


def main(argv: List[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    v = flags.FLAGS
    logging.set_verbosity(logging.INFO)
    result = measure_predict(v.scale, v.photos, v.photo_size, v.batch_size, v.rounds, v.set,
                             on_round=log_round)
    print(format_predict(result))
    write_json(v.output_json, result)


if __name__ == "__main__":
    flags.DEFINE_enum("scale", "small", ["paper", "small", "tiny"], "Experiment scale of the model.")
    flags.DEFINE_integer("photos", 16, "Photos graded per timed block.")
    flags.DEFINE_integer("photo_size", 512, "Side of the retina disc in the photos.")
    flags.DEFINE_integer("batch_size", 8, "Photos per network call.")
    flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
    flags.DEFINE_multi_string("set", [], "Config override field.path=value (repeatable).")
    flags.DEFINE_string("output_json", "", "Also write the results here.")
    app.run(main)
