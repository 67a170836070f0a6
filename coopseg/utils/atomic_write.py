"""Write a file as a whole or not at all.

A crash, a full disk or Ctrl-C leaves the previous file (or none), never half a
``metrics.json`` that a resumed run or a results table would then fail to parse.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_bytes_atomically(path: str, data: bytes) -> str:
    """Replace ``path`` with ``data`` atomically; returns ``path``.

    The bytes go to a hidden temporary file beside the target, are flushed to disk, and
    the temporary file is renamed over the target (``os.replace`` is atomic on POSIX and
    Windows within one filesystem).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".partial",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result file is for everyone
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_text_atomically(path: str, text: str) -> str:
    """Replace ``path`` with ``text`` (UTF-8) atomically; returns ``path``."""
    return write_bytes_atomically(path, text.encode("utf-8"))


def write_json_atomically(path: str, obj: Any, **dump_options) -> str:
    """Replace ``path`` with ``obj`` as indented JSON atomically; returns ``path``.
    ``dump_options`` go to ``json.dumps`` (e.g. ``default=str``)."""
    return write_text_atomically(path, json.dumps(obj, indent=2, **dump_options) + "\n")
