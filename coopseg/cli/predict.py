"""coopseg-predict: grade fundus photos and map their lesions with a trained model.

    coopseg-predict --model=runs/demo/export --input=photos/ --output_dir=predictions
    coopseg-predict --model=runs/demo --input=a.jpg,b.png --tta

Writes predictions.csv (one row per input file) and overlays/*.png; see docs/serving.md.
"""
from __future__ import annotations

import sys

from absl import app, flags

from coopseg.config import ConfigError
from coopseg.utils.console import run_program
from data_pipelines.records import DataError

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model", None, "SavedModel directory or coopseg run directory.")
    flags.DEFINE_list("input", [], "Photos and/or folders of photos (comma-separated).")
    flags.DEFINE_string("input_list", None, "Text file with one photo or folder per line.")
    flags.DEFINE_bool("recursive", False, "Also read the subfolders of input folders.")
    flags.DEFINE_string("output_dir", "predictions", "Where the CSV and overlays go.")
    flags.DEFINE_integer("batch_size", 8, "Photos per model call.")
    flags.DEFINE_bool("tta", False, "Flip test-time augmentation: average the photo and its "
                      "mirror image (twice the compute).")
    flags.DEFINE_bool("overlays", True, "Write a PNG per photo with the lesion overlay.")
    flags.DEFINE_integer("overlay_size", 512, "Side of the overlay image (before the legend).")
    flags.DEFINE_bool("crop_retina", None, "Crop to the retina disc (default: as the model's "
                      "training data was: on for sets made by coopseg-convert --crop_retina).")
    flags.DEFINE_bool("graham", None, "Graham-normalise photos (default: as the model's "
                      "training data was).")
    flags.DEFINE_integer("workers", 4, "Threads reading and preparing photos.")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.model:
        sys.exit("coopseg-predict: error: --model is required (a SavedModel or a run directory)")
    if FLAGS.batch_size < 1:
        sys.exit("coopseg-predict: error: --batch_size must be >= 1")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    from coopseg.serving.predict_folder import (PredictOptions, list_inputs, predict_folder,
                                                read_input_list, saw_real_photos)
    from coopseg.serving.predictor import load_predictor
    from data_pipelines.provenance import describe_training_data
    try:
        named = list(FLAGS.input) + (read_input_list(FLAGS.input_list) if FLAGS.input_list else [])
        if not named:
            sys.exit("coopseg-predict: error: give photos with --input or --input_list")
        inputs = list_inputs(named, FLAGS.recursive)
        if not inputs:
            sys.exit(f"coopseg-predict: error: no files in {', '.join(named)}")
        predictor = load_predictor(FLAGS.model)
        options = PredictOptions(batch_size=FLAGS.batch_size, flip_tta=FLAGS.tta,
                                 overlays=FLAGS.overlays, overlay_size=FLAGS.overlay_size,
                                 crop_retina=FLAGS.crop_retina, graham=FLAGS.graham,
                                 workers=FLAGS.workers)
        print(f"Predicting {len(inputs)} files with {predictor.source}"
              f"{' (flip TTA)' if FLAGS.tta else ''}; preprocessing: "
              f"{options.resolve(predictor.preprocessing).describe()}")
        print(f"The model was trained on: {describe_training_data(predictor.training_data)}")
        summary = predict_folder(predictor, inputs, FLAGS.output_dir, options)
    except (ConfigError, DataError) as err:
        sys.exit(f"coopseg-predict: error: {err}")
    except OSError as err:  # the output side: a read-only or full disk
        sys.exit(f"coopseg-predict: error: cannot write to {FLAGS.output_dir}: {err}")
    grades = ", ".join(f"grade {g}: {n}" for g, n in sorted(summary["grades"].items()))
    print(f"{summary['predicted']} predicted, {summary['unreadable']} unreadable (listed in the "
          f"CSV with the reason), {summary['no_retina']} without a visible retina, "
          f"{summary['ungradable']} not gradable (predicted anyway; see gradable_reason)"
          + (f"; {grades}" if grades else ""))
    print(f"written: {summary['csv']}"
          + (f" and {FLAGS.output_dir}/overlays/" if FLAGS.overlays else ""))
    if saw_real_photos(predictor) == "0":
        print("NOTE: this model was trained on synthetic images only and never saw a real "
              "photo: its grades and lesion maps of real photos are not meaningful "
              "(column model_saw_real_photos = 0). Train on real data first (README).")
    if summary["predicted"] == 0:
        sys.exit(f"coopseg-predict: error: no image was predicted: all {summary['images']} "
                 f"file(s) were unreadable (reasons in {summary['csv']})")


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    run_program(main, __name__)


if __name__ == "__main__":
    run()
