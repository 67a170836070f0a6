"""IDRiD reader: lesion segmentation (part A) and disease grading (part B).

IDRiD is the public analogue of the paper's lesion mask set. The zip's folder names,
with spaces and dots (``A. Segmentation/1. Original Images/a. Training Set/``), are
accepted as they are, and so is a simplified ``images/`` layout (docs/data.md).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

from coopseg.config import ConfigError
from data_pipelines.readers_common import (SkipLog, attach_images, index_files,
                                           read_grade_rows, require_dir, usable_file)
from data_pipelines.dataset_format import GRADED, MASKS, DatasetFormat
from data_pipelines.records import DataError, GradedExample, MaskExample

SEGMENTATION_DIR = "A. Segmentation"
GRADING_DIR = "B. Disease Grading"
SPLIT_DIRS = {"train": "a. Training Set", "test": "b. Testing Set"}
GRADING_CSVS = {"train": "a. IDRiD_Disease Grading_Training Labels.csv",
                "test": "b. IDRiD_Disease Grading_Testing Labels.csv"}
# IDRiD mask-file suffix -> coopseg class name (config.LESION_CLASSES spelling).
LESION_CODES: Dict[str, str] = {
    "MA": "microaneurysm",
    "HE": "haemorrhage",
    "EX": "hard_exudate",
    "SE": "soft_exudate",
    "OD": "optic_disc",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif")
_MASK_FILE = re.compile(r"^(?P<image_id>.+)_(?P<code>[A-Za-z]{2})\.tiff?$", re.IGNORECASE)


def idrid_class_names(include_optic_disc: bool = False) -> Tuple[str, ...]:
    """Background plus the four IDRiD lesions (and the optic disc, which is anatomy)."""
    lesions = tuple(name for code, name in LESION_CODES.items() if code != "OD")
    return ("background",) + lesions + (("optic_disc",) if include_optic_disc else ())


def _check_split(split: str) -> None:
    if split not in SPLIT_DIRS:
        raise ConfigError(f"IDRiD split={split!r}; choose one of {tuple(SPLIT_DIRS)}")


def _segmentation_dirs(root: str, split: str) -> Tuple[str, str]:
    """(image folder, folder whose subfolders hold the masks) for either layout.

    The zip's layout (``b. Testing Set`` for ``split="test"``)::

        A. Segmentation/1. Original Images/a. Training Set/IDRiD_01.jpg
        A. Segmentation/2. All Segmentation Groundtruths/a. Training Set/1. Microaneurysms/IDRiD_01_MA.tif

    or the simplified one: ``[<split>/]images/IDRiD_NN.jpg`` plus one folder per lesion
    holding ``IDRiD_NN_MA.tif`` etc.
    """
    part = os.path.join(root, SEGMENTATION_DIR)
    part = part if os.path.isdir(part) else root
    if os.path.isdir(os.path.join(part, "1. Original Images")):
        images = os.path.join(part, "1. Original Images", SPLIT_DIRS[split])
        masks = os.path.join(part, "2. All Segmentation Groundtruths", SPLIT_DIRS[split])
        return require_dir(images, "IDRiD image folder"), require_dir(masks, "IDRiD mask folder")
    for base in (os.path.join(root, split), root):
        if os.path.isdir(os.path.join(base, "images")):
            if base == root:
                logging.info("IDRiD: %s has a single images/ folder; split=%r does not apply",
                             root, split)
            return os.path.join(base, "images"), base
    raise DataError(f"IDRiD: {root!r} holds neither '{SEGMENTATION_DIR}/', "
                    "'1. Original Images/' nor an 'images/' folder")


def _find_masks(mask_root: str, image_dir: str) -> Dict[Tuple[str, str], str]:
    """(image id, lesion code) -> mask path for every ``<id>_<CODE>.tif`` under mask_root."""
    found: Dict[Tuple[str, str], str] = {}
    unknown: List[str] = []
    for folder, subfolders, files in os.walk(mask_root):
        subfolders[:] = sorted(d for d in subfolders
                               if os.path.join(folder, d) != image_dir and not d.startswith("."))
        for name in sorted(files):
            match = _MASK_FILE.match(name)
            if name.startswith(".") or match is None:
                continue
            code = match["code"].upper()
            path = os.path.join(folder, name)
            if code not in LESION_CODES:
                unknown.append(path)
                continue
            key = (match["image_id"], code)
            if key in found:
                raise DataError(f"IDRiD: two {code} masks for {key[0]}: {found[key]!r} and "
                                f"{path!r}")
            found[key] = path
    if unknown:
        raise DataError(f"IDRiD: mask file(s) with an unknown lesion suffix {unknown[:10]}; "
                        f"known suffixes {sorted(LESION_CODES)}")
    return found


def load_idrid_segmentation(root: str, split: str = "train",
                            class_names: Optional[Sequence[str]] = None,
                            include_optic_disc: bool = False,
                            strict: bool = False) -> List[MaskExample]:
    """MaskExamples of IDRiD part A, sorted by image id.

    ``mask_paths`` follow ``class_names[1:]`` (default ``idrid_class_names(
    include_optic_disc)``); ``""`` for a class IDRiD lacks (e.g. drusen) or a lesion
    absent from the image.
    ``image_labels`` marks which masks exist. ``root`` is the dataset root or its
    ``A. Segmentation`` folder. ``strict`` raises instead of skipping zero-byte files
    and masks without an image.

    Mask files are found by their suffix (``_MA``, ``_HE``, ``_EX``, ``_SE``, ``_OD``),
    not their folder name, so both layouts read the same way. A missing mask file means
    "no lesion of that kind" (IDRiD omits soft-exudate files for images without any).
    Masks are colour TIFs; the pipeline binarises them with > 0.
    """
    _check_split(split)
    if class_names is None:
        class_names = idrid_class_names(include_optic_disc)
    elif include_optic_disc and "optic_disc" not in class_names:
        raise ConfigError(f"IDRiD include_optic_disc=True but class_names {tuple(class_names)} "
                          "has no 'optic_disc'")
    code_of = {name: code for code, name in LESION_CODES.items()}
    codes = [code_of.get(name) for name in class_names[1:]]
    if not any(codes):
        raise ConfigError(f"IDRiD: class_names {tuple(class_names)} name none of its classes "
                          f"{sorted(LESION_CODES.values())}")
    root = require_dir(root, "IDRiD root")
    image_dir, mask_root = _segmentation_dirs(root, split)
    images = index_files(image_dir, IMAGE_EXTENSIONS)
    masks = _find_masks(mask_root, image_dir)
    log = SkipLog("IDRiD segmentation", strict)
    for image_id, code in sorted(masks):
        if image_id not in images:
            log.skip(f"mask without an image in {image_dir}", masks[(image_id, code)])
    examples = []
    for image_id, image_path in images.items():
        paths = tuple(masks.get((image_id, code), "") if code else "" for code in codes)
        if usable_file(image_path, "image", log) and all(
                usable_file(p, "mask", log) for p in paths if p):
            examples.append(MaskExample(image_path=image_path, image_id=image_id, mask_paths=paths,
                                        image_labels=tuple(int(bool(p)) for p in paths)))
    return log.finish(examples, image_dir)


def _grading_csv(part: str, split: str) -> str:
    folder = os.path.join(part, "2. Groundtruths")
    exact = os.path.join(folder, GRADING_CSVS[split])
    if os.path.isfile(exact):
        return exact
    # Re-zipped copies sometimes rename the CSV; accept a single "...Training/Testing...csv".
    word = "training" if split == "train" else "testing"
    candidates = sorted(n for n in os.listdir(require_dir(folder, "IDRiD grading label folder"))
                        if n.lower().endswith(".csv") and word in n.lower())
    if len(candidates) != 1:
        raise DataError(f"IDRiD: expected {GRADING_CSVS[split]!r} in {folder!r}, "
                        f"found CSVs {candidates or sorted(os.listdir(folder))}")
    return os.path.join(folder, candidates[0])


def load_idrid_grading(root: str, split: str = "train", labels_csv: Optional[str] = None,
                       image_dir: Optional[str] = None,
                       strict: bool = False) -> List[GradedExample]:
    """GradedExamples of IDRiD part B (``Image name,Retinopathy grade``), sorted by id.

    ``root`` is the dataset root or its ``B. Disease Grading`` folder; ``labels_csv``
    and ``image_dir`` override the IDRiD names (relative to that folder, or absolute).
    IDRiD has no patient ids, so each image is its own patient. The zip's layout
    (``b. ...`` for ``split="test"``)::

        B. Disease Grading/1. Original Images/a. Training Set/IDRiD_001.jpg
        B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv
    """
    _check_split(split)
    root = require_dir(root, "IDRiD root")
    part = os.path.join(root, GRADING_DIR)
    part = part if os.path.isdir(part) else root
    csv_path = os.path.join(part, labels_csv) if labels_csv else _grading_csv(part, split)
    images = os.path.join(part, image_dir or os.path.join("1. Original Images", SPLIT_DIRS[split]))
    rows = read_grade_rows(csv_path, "Image name", "Retinopathy grade")
    log = SkipLog("IDRiD grading", strict)
    examples = attach_images(rows, csv_path, require_dir(images, "IDRiD image folder"), log,
                             extensions=IMAGE_EXTENSIONS)
    return log.finish(examples, csv_path)


# IDRiD's two parts; a validation path reads its testing set.
SEGMENTATION_FORMAT = DatasetFormat("idrid", MASKS, load_idrid_segmentation,
                                    splits={"train": "train", "val": "test"},
                                    class_names=idrid_class_names)
GRADING_FORMAT = DatasetFormat("idrid_grading", GRADED, load_idrid_grading,
                               splits={"train": "train", "val": "test"})
