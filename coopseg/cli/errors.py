"""Ending a CLI on an error that happened while tf.data was running."""
from __future__ import annotations

import os
import sys

from absl import logging


def exit_now(program: str, message: str, code: int = 1) -> None:
    """Print ``<program>: error: <message>`` and end the process at once (``os._exit``).

    ``sys.exit`` would run interpreter shutdown while a failed tf.data iterator is still
    alive: its in-flight Python decode calls (``tf.numpy_function``) then wait for the
    GIL that shutdown holds, and the process hung after printing the error — in 1 of 6
    runs of ``coopseg-train --noskip_bad_images`` on a folder with a corrupt JPEG. Nothing
    is lost by skipping the shutdown: checkpoints are written atomically and the
    trainer closed its summary writers on the way out.
    """
    sys.stderr.write(f"{program}: error: {message}\n")
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def data_error_line(message: str) -> str:
    """The ``DataError`` line of a TensorFlow error message (it names the file)."""
    for line in message.splitlines():
        if "Error:" in line and ("DataError" in line or "UnreadableImageError" in line):
            return line.split("Error:", 1)[1].strip()
    return message.splitlines()[0]


def exit_on_wrapped_data_error(program: str, err) -> None:
    """A DataError raised while decoding inside tf.data reaches the caller wrapped in an
    InvalidArgumentError; show its message (which names the file), not a graph stack
    trace, and end the process (``exit_now``). Any other error is re-raised."""
    if "DataError" not in err.message and "UnreadableImageError" not in err.message:
        raise err
    exit_now(program, data_error_line(err.message))
