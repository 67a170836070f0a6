"""Generic mask-set reader: any lesion (or other) segmentation set in a plain layout.

``root/images/<id>.<ext>`` with either ``root/masks/<class_name>/<id>.png`` (binary, one
folder per foreground class) or ``root/labels/<id>.png`` (class-index map, 255 = ignore);
optionally ``classes.txt`` and ``grades.csv`` (``load_mask_set``; docs/data.md). The
synthetic fundus generator writes exactly this layout (masks only where non-empty).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

from absl import logging

from coopseg.config import ConfigError
from data_pipelines.readers_common import (SkipLog, index_files, read_grade_rows,
                                           require_dir, usable_file)
from data_pipelines.dataset_format import MASKS, DatasetFormat
from data_pipelines.records import DataError, MaskExample

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
# Masks must be lossless: JPEG artefacts would invent lesion pixels at edges.
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp")


def check_classes_file(root: str, class_names: Sequence[str]) -> None:
    """DataError when ``root/classes.txt`` lists other classes than ``class_names``.

    The file may list all classes or only the foreground ones (background implied); it
    must agree with the run's classes, so a set drawn for other classes is not silently
    misread.
    """
    path = os.path.join(root, "classes.txt")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        listed = [line.strip() for line in handle if line.strip()]
    if listed not in (list(class_names), list(class_names[1:])):
        raise DataError(f"{path} lists classes {listed} but the run asks for {list(class_names)} "
                        "(background first); mask folders would be misread, so fix one of them")


ANNOTATES_FILE = "annotates.txt"


def annotated_classes(root: str, class_names: Sequence[str]) -> Tuple[int, ...]:
    """The 1/0 flags over ``class_names[1:]`` of the classes ``root/annotates.txt`` lists
    (one foreground class per line): the set marks only those. () when the file is
    absent or lists every class (a fully annotated set)."""
    path = os.path.join(root, ANNOTATES_FILE)
    if not os.path.isfile(path):
        return ()
    with open(path, encoding="utf-8") as handle:
        listed = [line.strip() for line in handle if line.strip()]
    unknown = [name for name in listed if name not in class_names[1:]]
    if unknown or not listed:
        raise DataError(f"{path} lists {unknown or 'no class'}; it names the foreground "
                        f"classes the set annotates, among {list(class_names[1:])}")
    flags = tuple(int(name in listed) for name in class_names[1:])
    return () if all(flags) else flags


def _read_grades(root: str) -> Dict[str, int]:
    path = os.path.join(root, "grades.csv")
    if not os.path.isfile(path):
        return {}
    return {row.image_id: row.grade for row in read_grade_rows(path, "image", "level")}


def _binary_masks(mask_dir: str, class_names: Sequence[str]) -> List[Dict[str, str]]:
    """Per foreground class: image id -> mask path. Unknown class folders are an error."""
    known = list(class_names[1:])
    unknown = sorted(d for d in os.listdir(mask_dir)
                     if os.path.isdir(os.path.join(mask_dir, d)) and d not in known
                     and index_files(os.path.join(mask_dir, d), MASK_EXTENSIONS))
    if unknown:
        raise DataError(f"{mask_dir}: mask folder(s) {unknown} are not among the foreground "
                        f"classes {known}; rename them or pass matching class_names")
    return [index_files(os.path.join(mask_dir, name), MASK_EXTENSIONS)
            if os.path.isdir(os.path.join(mask_dir, name)) else {} for name in known]


def _binary_mask_examples(images: Dict[str, str], per_class: List[Dict[str, str]],
                          log: SkipLog) -> List[MaskExample]:
    for masks in per_class:
        for image_id in sorted(set(masks) - set(images)):
            log.skip("mask without an image in images/", masks[image_id])
    examples = []
    for image_id, image_path in images.items():
        paths = tuple(masks.get(image_id, "") for masks in per_class)
        if usable_file(image_path, "image", log) and all(
                usable_file(p, "mask", log) for p in paths if p):
            examples.append(MaskExample(image_path=image_path, image_id=image_id, mask_paths=paths,
                                        image_labels=tuple(int(bool(p)) for p in paths)))
    return examples


def _label_map_examples(images: Dict[str, str], labels: Dict[str, str],
                        log: SkipLog) -> List[MaskExample]:
    for image_id in sorted(set(labels) - set(images)):
        log.skip("label map without an image in images/", labels[image_id])
    examples = []
    for image_id, image_path in images.items():
        if image_id not in labels:
            log.skip("image without a label map in labels/", image_path)
        elif (usable_file(image_path, "image", log)
              and usable_file(labels[image_id], "label map", log)):
            examples.append(MaskExample(image_path=image_path, image_id=image_id,
                                        label_path=labels[image_id]))
    return examples


def load_mask_set(root: str, class_names: Sequence[str], strict: bool = False) -> List[MaskExample]:
    """MaskExamples of a generic mask set, sorted by image id.

    With ``masks/``: ``mask_paths`` follow ``class_names[1:]`` and ``image_labels``
    marks which class masks exist. With ``labels/``: ``label_path`` is set and
    ``image_labels`` is empty (unknown without decoding pixels). An image without any
    binary mask is a valid negative example; in the ``labels/`` layout an image
    without a label file is unannotated and skipped. ``strict`` raises instead of
    skipping zero-byte files, unannotated images and annotations without an image.

    A missing binary mask file means "no pixel of that class". ``root/grades.csv``
    (``image,level``), if present, fills ``MaskExample.grade``.
    """
    root = require_dir(root, "mask set root")
    if len(class_names) < 2:
        raise ConfigError(f"mask set {root!r}: class_names {tuple(class_names)} needs background "
                          "plus at least one class")
    check_classes_file(root, class_names)
    images = index_files(require_dir(os.path.join(root, "images"), "mask set image folder"),
                         IMAGE_EXTENSIONS)
    mask_dir, label_dir = os.path.join(root, "masks"), os.path.join(root, "labels")
    if os.path.isdir(mask_dir) == os.path.isdir(label_dir):
        state = "both" if os.path.isdir(mask_dir) else "neither"
        raise DataError(f"mask set {root!r} has {state} of masks/ (binary, per class) and "
                        "labels/ (class-index maps); exactly one is needed")
    log = SkipLog("mask set", strict)
    if os.path.isdir(mask_dir):
        examples = _binary_mask_examples(images, _binary_masks(mask_dir, class_names), log)
    else:
        examples = _label_map_examples(images, index_files(label_dir, MASK_EXTENSIONS), log)
    annotated = annotated_classes(root, class_names)
    if annotated:
        if os.path.isdir(mask_dir):
            extra = [name for name, flag in zip(class_names[1:], annotated)
                     if not flag and os.path.isdir(os.path.join(mask_dir, name))]
            if extra:
                raise DataError(f"mask set {root!r}: masks/ has folders {extra} for classes "
                                f"its {ANNOTATES_FILE} does not list")
        examples = [dataclasses.replace(e, annotated=annotated) for e in examples]
        logging.info("mask set %s annotates %s only: unmarked pixels are background or an "
                     "unannotated class (marginal loss)", root,
                     [n for n, f in zip(class_names[1:], annotated) if f])
    grades = _read_grades(root)
    for image_id in sorted(set(grades) - set(images)):
        log.ignore("grades.csv row without an image", image_id)
    examples = [dataclasses.replace(e, grade=grades.get(e.image_id, -1)) for e in examples]
    if grades:
        ungraded = sorted(e.image_id for e in examples if e.grade < 0)
        if ungraded:
            logging.warning("mask set %s: %d image(s) have no row in grades.csv (grade -1): %s",
                            root, len(ungraded), ", ".join(ungraded[:10]))
    return log.finish(examples, root)


FORMAT = DatasetFormat("generic", MASKS, load_mask_set)
