"""One entry point per agent: a format name and a path -> reader records.

``DataConfig.graded_format`` / ``masks_format`` name the format; keyword arguments
pass through to the reader (e.g. ``usage="public"`` for EyePACS, ``split="val"`` for
VOC, ``strict=True`` for any). ``tfrecord`` sets are not records: they are read by
the tf.data pipeline directly.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Sequence

from coopseg.config import ConfigError
from data_pipelines.aptos import load_aptos
from data_pipelines.eyepacs import load_eyepacs
from data_pipelines.idrid import load_idrid_grading, load_idrid_segmentation
from data_pipelines.masks import load_mask_set
from data_pipelines.records import DataError, GradedExample, MaskExample
from data_pipelines.voc import load_voc

GRADED_READERS: Dict[str, Callable[..., List[GradedExample]]] = {
    "eyepacs": load_eyepacs,
    "aptos": load_aptos,
    "idrid": load_idrid_grading,
}
MASK_READERS: Dict[str, Callable[..., List[MaskExample]]] = {
    "generic": load_mask_set,
    "idrid": load_idrid_segmentation,
    "voc": load_voc,
}


def _reader(readers: Dict[str, Callable], fmt: str, kind: str, path: str) -> Callable:
    if fmt not in readers:
        raise ConfigError(f"unknown {kind} dataset format {fmt!r}; choose one of {tuple(readers)}")
    if not os.path.exists(path):
        raise DataError(f"{kind} dataset path {path!r} does not exist")
    return readers[fmt]


def load_graded(fmt: str, path: str, **kwargs: Any) -> List[GradedExample]:
    """GradedExamples of the ``fmt`` (eyepacs | aptos | idrid) dataset at ``path``."""
    return _reader(GRADED_READERS, fmt, "graded", path)(path, **kwargs)


def load_masks(fmt: str, path: str, class_names: Sequence[str], **kwargs: Any) -> List[MaskExample]:
    """MaskExamples of the ``fmt`` (generic | idrid | voc) dataset at ``path``.

    ``class_names`` (background first) fixes the order of ``mask_paths`` and
    ``image_labels``; for VOC it must have VOC's 21 entries.
    """
    return _reader(MASK_READERS, fmt, "mask", path)(path, class_names=class_names, **kwargs)
