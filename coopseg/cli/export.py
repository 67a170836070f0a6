"""coopseg-export: write a SavedModel with two serving signatures from a run's last checkpoint.

    coopseg-export --model_dir=runs/demo --export_dir=exported/demo
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

from coopseg.config import ConfigError
from coopseg.utils.console import run_program

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Run directory written by coopseg-train.")
    flags.DEFINE_string("export_dir", None, "Where to write (default <model_dir>/export).")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    # Here, not at the top: --help and flag errors answer without loading TensorFlow.
    from coopseg.runs.run_dir import load_run
    from coopseg.serving import photo_preprocessing
    from coopseg.serving.export import export_saved_model, serving_size
    from data_pipelines.provenance import describe_training_data, training_data_record
    try:
        config, system = load_run(FLAGS.model_dir)
    except ConfigError as err:
        sys.exit(f"coopseg-export: error: {err}")
    path = export_saved_model(system, config,
                              FLAGS.export_dir or os.path.join(FLAGS.model_dir, "export"))
    size = serving_size(config)
    print(f"SavedModel written to {path}\n"
          f"  signature 'serving_default': images, float32 RGB 0..255 [N, {size}, {size}, 3]\n"
          f"  signature 'serving_bytes':   image_bytes, string [N] of encoded JPEG/PNG photos "
          f"(decoded and prepared in-graph: "
          f"{photo_preprocessing.from_config(config).describe()}, resize)\n"
          f"  trained on: {describe_training_data(training_data_record(config.data))}")


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    run_program(main, __name__)


if __name__ == "__main__":
    run()
