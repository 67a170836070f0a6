"""One entry point per agent: a format name, a path and a role -> reader records.

Every format has one name across the CLIs (``coopseg-convert --format`` and
``--graded_format``/``--masks_format`` alike). Formats whose layout has named splits
read the split the role means: training the training split, validation the held-out
one (IDRiD's and DIARETDB1's test sets, VOC's val). ``tfrecord`` is read by tf.data.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging

from coopseg.config import ConfigError
from data_pipelines import aptos, diaretdb1, eyepacs, heimed, idrid, masks, voc
from data_pipelines.dataset_format import GRADED, MASKS, DatasetFormat
from data_pipelines.records import DataError, GradedExample, MaskExample

# Every reader, as it declares itself (``DatasetFormat``, beside its reader).
FORMATS: Dict[str, DatasetFormat] = {f.name: f for f in (
    eyepacs.FORMAT, aptos.FORMAT, idrid.GRADING_FORMAT,
    masks.FORMAT, idrid.SEGMENTATION_FORMAT, voc.FORMAT, diaretdb1.FORMAT, heimed.FORMAT)}
GRADED_READERS: Dict[str, Callable[..., List[GradedExample]]] = {
    name: f.load for name, f in FORMATS.items() if f.kind == GRADED}
MASK_READERS: Dict[str, Callable[..., List[MaskExample]]] = {
    name: f.load for name, f in FORMATS.items() if f.kind == MASKS}
# The choices of --graded_format / --masks_format, for help texts.
GRADED_FORMATS = " | ".join(list(GRADED_READERS) + ["tfrecord"])
MASK_FORMATS = " | ".join(list(MASK_READERS) + ["tfrecord"])
# Earlier names of a format, accepted with a note: IDRiD's grading part was
# ``--graded_format=idrid`` in coopseg-train while coopseg-convert called it idrid_grading.
GRADED_ALIASES: Dict[str, str] = {"idrid": idrid.GRADING_FORMAT.name}
# role -> the reader's split, for the formats whose on-disk layout names its splits.
SPLITS: Dict[str, Dict[str, str]] = {name: dict(f.splits) for name, f in FORMATS.items()
                                     if f.splits}
ROLES = ("train", "val")


def run_class_names(masks_format: str) -> Optional[Tuple[str, ...]]:
    """The classes a run reading ``masks_format`` takes when it names none (VOC's 21);
    None: the run's own (the fundus lesions)."""
    fmt = FORMATS.get(masks_format)
    return fmt.default_class_names() if fmt is not None and fmt.classes_by_default else None


def canonical_graded_format(fmt: str) -> str:
    """The one name of a graded format; an earlier name is accepted with a logged note."""
    if fmt in GRADED_ALIASES:
        logging.warning("graded format %r is now called %r (accepted; please use the new "
                        "name)", fmt, GRADED_ALIASES[fmt])
        return GRADED_ALIASES[fmt]
    return fmt


def split_for(fmt: str, role: str) -> Optional[str]:
    """The reader split a ``role`` (train | val) reads in ``fmt``; None: no named splits."""
    if role not in ROLES:
        raise ConfigError(f"data role {role!r}; choose one of {ROLES}")
    return SPLITS.get(fmt, {}).get(role)


def _reader(readers: Dict[str, Callable], fmt: str, kind: str, path: str) -> Callable:
    if fmt not in readers:
        raise ConfigError(f"unknown {kind} dataset format {fmt!r}; choose one of {tuple(readers)}")
    if not os.path.exists(path):
        raise DataError(f"{kind} dataset path {path!r} does not exist")
    return readers[fmt]


def _split_kwargs(fmt: str, role: Optional[str], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    if role is None or "split" in kwargs:
        return kwargs
    split = split_for(fmt, role)
    return {**kwargs, "split": split} if split else kwargs


def load_graded(fmt: str, path: str, role: Optional[str] = None,
                **kwargs: Any) -> List[GradedExample]:
    """GradedExamples of the ``fmt`` (eyepacs | aptos | idrid_grading) set at ``path``.

    ``role`` (train | val) picks the split of a format that has named splits
    (``split_for``); an explicit ``split=`` keyword wins.
    """
    fmt = canonical_graded_format(fmt)
    reader = _reader(GRADED_READERS, fmt, "graded", path)
    return reader(path, **_split_kwargs(fmt, role, kwargs))


def load_masks(fmt: str, path: str, class_names: Sequence[str], role: Optional[str] = None,
               **kwargs: Any) -> List[MaskExample]:
    """MaskExamples of the ``fmt`` (generic | idrid | voc | diaretdb1 | heimed) set at
    ``path``.

    ``class_names`` (background first) fixes the order of ``mask_paths`` and
    ``image_labels``; for VOC it must have VOC's 21 entries. ``role`` as for
    ``load_graded``.
    """
    reader = _reader(MASK_READERS, fmt, "mask", path)
    return reader(path, class_names=class_names, **_split_kwargs(fmt, role, kwargs))


def mask_sets(paths: str, formats: str) -> List[Tuple[str, str]]:
    """``(path, format)`` of each mask set a data path names. Several sets train (or
    validate) together when the path lists them comma-separated; each takes its format
    from a ``FORMAT:PATH`` prefix, else from ``formats``: one format for all, or one per
    set in order (``--masks_train=/data/a,idrid:/data/b --masks_format=generic``)."""
    entries = [p.strip() for p in paths.split(",") if p.strip()]
    format_list = [f.strip() for f in formats.split(",") if f.strip()]
    sets: List[Tuple[str, Optional[str]]] = []
    for entry in entries:
        head, sep, tail = entry.partition(":")
        known = head in MASK_READERS or head == "tfrecord"
        sets.append((tail, head) if sep and known else (entry, None))
    if any(fmt is None for _, fmt in sets):
        if len(format_list) == 1:
            format_list = format_list * len(sets)
        if len(format_list) != len(sets):
            raise ConfigError(f"{len(sets)} mask set(s) ({paths}) but {len(format_list)} formats "
                              f"({formats}): give one format for all, one per set, or write "
                              "FORMAT:PATH")
        sets = [(path, fmt or format_list[k]) for k, (path, fmt) in enumerate(sets)]
    if len(sets) > 1 and any(fmt == "tfrecord" for _, fmt in sets):
        raise ConfigError("several mask sets train together from folder formats; convert "
                          "them into one TFRecord set instead")
    return [(path, fmt) for path, fmt in sets]
