"""EyePACS / Kaggle Diabetic Retinopathy Detection reader.

Kaggle's own file names: ``trainLabels.csv`` with ``train/``, or
``retinopathy_solution.csv`` with ``test/`` (``load_eyepacs``; docs/data.md).
"""
from __future__ import annotations

import os
from typing import List, Optional

from coopseg.config import ConfigError
from data_pipelines.readers_common import (SkipLog, attach_images, csv_columns,
                                           read_grade_rows, require_dir)
from data_pipelines.dataset_format import GRADED, DatasetFormat
from data_pipelines.records import DataError, GradedExample

TRAIN_LABELS = "trainLabels.csv"
SOLUTION_LABELS = "retinopathy_solution.csv"
EXTENSIONS = (".jpeg", ".jpg", ".png", ".tif")
USAGES = ("public", "private", "all")


def eyepacs_patient_id(image_id: str) -> str:
    """``10_left`` and ``10_right`` are patient ``10``: both eyes stay on one side of a split."""
    for side in ("_left", "_right"):
        if image_id.endswith(side):
            return image_id[: -len(side)]
    return image_id


def _labels_path(root: str, labels_csv: Optional[str]) -> str:
    if labels_csv:
        return labels_csv if os.path.isabs(labels_csv) else os.path.join(root, labels_csv)
    for name in (TRAIN_LABELS, SOLUTION_LABELS):
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    raise DataError(f"EyePACS: neither {TRAIN_LABELS} nor {SOLUTION_LABELS} found in {root!r}; "
                    "pass labels_csv=")


def _image_dir(root: str, image_dir: Optional[str], has_usage: bool) -> str:
    if image_dir:
        path = image_dir if os.path.isabs(image_dir) else os.path.join(root, image_dir)
        return require_dir(path, "EyePACS image folder")
    # Kaggle ships train.zip / test.zip, which unpack to train/ and test/.
    default = os.path.join(root, "test" if has_usage else "train")
    return default if os.path.isdir(default) else root


def load_eyepacs(root: str, labels_csv: Optional[str] = None, image_dir: Optional[str] = None,
                 usage: str = "all", strict: bool = False) -> List[GradedExample]:
    """GradedExamples of an EyePACS folder, sorted by image id.

    Args:
      root: dataset folder.
      labels_csv: label file, relative to ``root`` or absolute; default
        ``trainLabels.csv``, else ``retinopathy_solution.csv``.
      image_dir: image folder, relative to ``root`` or absolute; default ``root/train/``
        for ``trainLabels.csv`` (``image,level``) and ``root/test/`` for
        ``retinopathy_solution.csv`` (``image,level,Usage``) when that folder exists,
        else ``root/`` itself.
      usage: ``public`` | ``private`` | ``all`` rows of a solution CSV (needs a
        ``Usage`` column unless ``all``; Public and Private are the two halves of the
        Kaggle leaderboard).
      strict: raise instead of skipping rows whose image is missing or zero bytes.

    Images are ``<image>.jpeg`` (also ``.jpg``, ``.png``, ``.tif``, tried in that order).
    """
    usage = usage.lower()
    if usage not in USAGES:
        raise ConfigError(f"EyePACS usage={usage!r}; choose one of {USAGES}")
    root = require_dir(root, "EyePACS root")
    csv_path = _labels_path(root, labels_csv)
    has_usage = "usage" in [name.lower() for name in csv_columns(csv_path)]
    if usage != "all" and not has_usage:
        raise DataError(f"EyePACS: usage={usage!r} needs a Usage column, which {csv_path!r} "
                        f"lacks (found {csv_columns(csv_path)}); use usage='all'")
    rows = read_grade_rows(csv_path, "image", "level",
                           extra_columns=("Usage",) if has_usage else ())
    if has_usage:
        bad = [r for r in rows if r.values["Usage"].lower() not in ("public", "private")]
        if bad:
            raise DataError(f"{csv_path}:{bad[0].line}: Usage {bad[0].values['Usage']!r} "
                            "is neither Public nor Private")
    kept = [r for r in rows if usage == "all" or r.values["Usage"].lower() == usage]
    log = SkipLog("EyePACS", strict)
    examples = attach_images(kept, csv_path, _image_dir(root, image_dir, has_usage), log,
                             patient_of=eyepacs_patient_id,
                             labelled_ids=[r.image_id for r in rows], extensions=EXTENSIONS)
    what = f"{csv_path} (usage={usage}: {len(kept)} of {len(rows)} rows selected)"
    return log.finish(examples, what)


FORMAT = DatasetFormat("eyepacs", GRADED, load_eyepacs)
