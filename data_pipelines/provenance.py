"""What data a model learned from: its training sets, their formats, and whether any of
them holds real photos or only coopseg's synthetic images.

The export records it (``assets/coopseg.json``), so ``coopseg-predict`` can warn that a
model that never saw a real photo paints implausible lesions on one.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterator, Optional

from coopseg.config import DataConfig
from data_pipelines.datasets import mask_sets

# Manifests the synthetic generators write at the top of a set (synthetic.py,
# synthetic_voc.py): a folder under one of them holds synthetic images.
SYNTHETIC_MANIFESTS = ("synthetic.json", "synthetic_voc.json")
TFRECORD_MANIFEST = "manifest.json"
_LEVELS_UP = 3


def _self_and_parents(path: str) -> Iterator[str]:
    folder = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path))
    for _ in range(_LEVELS_UP + 1):
        yield folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _tfrecord_sources(path: str) -> Iterator[str]:
    """The source folders a converted TFRecord set records in its manifest."""
    try:
        with open(os.path.join(path, TFRECORD_MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return
    for split in (manifest.get("splits") or {}).values():
        source = (split or {}).get("source") or {}
        if source.get("path"):
            yield source["path"]


def is_synthetic(path: str, fmt: str = "") -> Optional[bool]:
    """True when ``path`` is (inside) a synthetic set, False when it is not, None when
    it cannot be told (a TFRecord set whose manifest names no source)."""
    if fmt == "tfrecord" or os.path.isfile(os.path.join(path, TFRECORD_MANIFEST)):
        sources = [is_synthetic(source) for source in _tfrecord_sources(path)]
        if sources:
            return all(sources)
        if fmt == "tfrecord":
            return None
    return any(os.path.isfile(os.path.join(folder, name))
               for folder in _self_and_parents(path) for name in SYNTHETIC_MANIFESTS)


def training_data_record(data: DataConfig) -> Dict[str, object]:
    """``{"sets": {role: {path, format, synthetic}}, "real_photos": bool | None}`` for
    the training sets of ``data``; ``real_photos`` is None when it cannot be told."""
    sets = {}
    for role, fmt in (("graded_train", data.graded_format), ("masks_train", data.masks_format)):
        path = getattr(data, role)
        if not path:
            continue
        # A mask path may name several sets, comma-separated, with one format each.
        sets_here = mask_sets(path, fmt) if role == "masks_train" else [(path, fmt)]
        paths = [p for p, _ in sets_here]
        flags = [is_synthetic(p, f) for p, f in sets_here]
        synthetic = (True if all(f is True for f in flags)
                     else False if any(f is False for f in flags) else None)
        sets[role] = {"path": ",".join(os.path.abspath(p) for p in paths), "format": fmt,
                      "synthetic": synthetic}
    flags = [entry["synthetic"] for entry in sets.values()]
    if any(flag is False for flag in flags):
        real: Optional[bool] = True
    elif flags and all(flag is True for flag in flags):
        real = False
    else:
        real = None
    return {"sets": sets, "real_photos": real}


def describe_training_data(record: Optional[Dict[str, object]]) -> str:
    """One line for a user: what the model was trained on, from an export's record."""
    if not record:
        return "unknown (the export predates this record)"
    real = record.get("real_photos")
    if real is False:
        return "synthetic images only: the model never saw a real photo"
    sets = record.get("sets") or {}
    names = ", ".join(f"{role} {entry['path']} ({entry['format']})"
                      for role, entry in sets.items())
    return (f"real photos ({names})" if real else f"could not be told ({names})")
