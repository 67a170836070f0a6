"""Write a generated directory (a data set, a report) as a whole or not at all.

The synthetic generators write into a temporary sibling directory and rename it into
place at the end, so an interrupted run never leaves a half-written set that a later
``ensure_*`` call would take for complete, and they never overwrite a directory that
some other tool wrote (one without their manifest).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from data_pipelines.records import DataError


def check_replaceable(out: Path, manifest_name: str) -> None:
    """Refuse to overwrite ``out`` unless it is missing, empty or holds ``manifest_name``."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest_name).exists():
        raise DataError(f"{out}: not empty and has no {manifest_name}; refusing to overwrite "
                        "a directory this generator did not write")


def write_directory_atomically(out: Path, manifest_name: str,
                               write: Callable[[Path], dict]) -> dict:
    """Run ``write(tmp_dir) -> manifest`` in a temporary sibling of ``out``, save the
    manifest as ``manifest_name`` and swap the directory into place; returns the manifest."""
    check_replaceable(out, manifest_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = write(tmp)
        # allow_nan=False: a nan would make the manifest invalid JSON for other readers.
        (tmp / manifest_name).write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if out.exists():  # an older one of ours (checked above): move aside, then drop
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "set")
            try:
                os.replace(tmp, out)
            except BaseException:
                os.replace(old / "set", out)  # put the earlier one back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
