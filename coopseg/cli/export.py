"""coopseg-export: write a SavedModel with a serving signature from a run's last checkpoint.

    coopseg-export --model_dir=runs/demo --export_dir=exported/demo
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS


def _define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Run directory written by coopseg-train.")
    flags.DEFINE_string("export_dir", None, "Where to write (default <model_dir>/export).")


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from coopseg.cli.run_dir import load_run
    from coopseg.config import ConfigError
    from coopseg.export import export_saved_model
    try:
        config, system = load_run(FLAGS.model_dir)
    except ConfigError as err:
        sys.exit(f"coopseg-export: error: {err}")
    path = export_saved_model(system, config,
                              FLAGS.export_dir or os.path.join(FLAGS.model_dir, "export"))
    print(f"SavedModel written to {path} (signature 'serving_default': float32 RGB 0..255 "
          f"[N, {config.model.input_size}, {config.model.input_size}, 3])")


def run() -> None:
    """Console-script entry point."""
    _define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
