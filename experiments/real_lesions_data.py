"""The real-data suite's data: the four public sets under ``--real_data``, the graded
ones split by patient and converted once into TFRecords, the mask sets read in place."""
from __future__ import annotations

import dataclasses
import os
from typing import List

from absl import logging

from data_pipelines import conversion, datasets
from data_pipelines.idrid import idrid_class_names
from data_pipelines.labels import split_by_patient
from data_pipelines.records import DataError, GradedExample
from experiments.data_source import DataSource
from experiments.real_lesions import NAME, SUBFOLDERS

GRADED_VAL_FRACTION = 0.1
# The public copies' file names where they differ from the original sets' (APTOS:
# ``train-backup.csv`` + ``train_images_resized/``; EyePACS subset: ``images/``).
APTOS_LAYOUTS = (("train.csv", "train_images"), ("train-backup.csv", "train_images_resized"))
EYEPACS_IMAGE_DIRS = ("train", "images")
# Graded images are stored at this size: both public copies are 224-256 px already.
GRADED_STORE_SIZE = 256


def _subfolder(root: str, name: str) -> str:
    path = os.path.join(root, SUBFOLDERS[name])
    if not os.path.isdir(path):
        raise DataError(f"--real_data={root}: no {SUBFOLDERS[name]}/ folder ({name}); "
                        "docs/real_data.md says where each public set goes")
    return path


def _aptos(root: str, strict: bool) -> List[GradedExample]:
    for csv, images in APTOS_LAYOUTS:
        if os.path.isfile(os.path.join(root, csv)) and os.path.isdir(os.path.join(root, images)):
            logging.info("APTOS at %s: %s + %s/", root, csv, images)
            return datasets.load_graded("aptos", root, csv=csv, image_dir=images, strict=strict)
    raise DataError(f"{root}: neither APTOS layout "
                    f"({' nor '.join(f'{c} + {i}/' for c, i in APTOS_LAYOUTS)})")


def _eyepacs(root: str, strict: bool) -> List[GradedExample]:
    for images in EYEPACS_IMAGE_DIRS:
        if os.path.isdir(os.path.join(root, images)):
            logging.info("EyePACS at %s: trainLabels.csv + %s/", root, images)
            return datasets.load_graded("eyepacs", root, image_dir=images, strict=strict)
    raise DataError(f"{root}: no EyePACS image folder ({' or '.join(EYEPACS_IMAGE_DIRS)}/)")


def graded_examples(root: str, strict: bool = False) -> List[GradedExample]:
    """APTOS + EyePACS, each id and patient prefixed with its set (they could collide)."""
    out: List[GradedExample] = []
    for name, reader in (("aptos", _aptos), ("eyepacs", _eyepacs)):
        for e in reader(_subfolder(root, name), strict):
            out.append(dataclasses.replace(e, image_id=f"{name}/{e.image_id}",
                                           patient_id=f"{name}/{e.patient_id or e.image_id}"))
    return out


def prepare(root: str, out: str, seed: int = 0, workers: int = 0) -> DataSource:
    """The suite's data from the public sets under ``root``: the graded sets split by
    patient (``GRADED_VAL_FRACTION`` held out) and converted once into TFRecords under
    ``<out>/real_lesions/data`` (resumable), the mask sets read where they are."""
    root = os.path.abspath(root)
    ddb1, heimed = _subfolder(root, "diaretdb1"), _subfolder(root, "heimed")
    graded_dir = os.path.join(os.path.abspath(out), NAME, "data", "graded")
    examples = graded_examples(root)
    train, val = split_by_patient(examples, GRADED_VAL_FRACTION, seed=seed)
    for split, members in (("train", train), ("val", val)):
        options = conversion.ConvertOptions(
            format="aptos", input=root, output=graded_dir, split=split,
            size=GRADED_STORE_SIZE, workers=workers,
            reader_args=(("source", "aptos+eyepacs"), ("val_fraction", str(GRADED_VAL_FRACTION)),
                         ("seed", str(seed))))
        conversion.convert_split(options, examples=members)
    classes = idrid_class_names()
    return DataSource(
        "tfrecord", graded_dir, graded_dir, "diaretdb1",
        f"diaretdb1:{ddb1},heimed:{heimed}", f"diaretdb1:{ddb1}",
        description=(f"DIARETDB1 train (+ HEI-MED exudates) / test, APTOS + EyePACS graded "
                     f"({len(train)} train / {len(val)} held-out by patient) from {root}"),
        counts={"graded_train": len(train), "graded_val": len(val)}, class_names=classes)
