"""APTOS 2019 Blindness Detection reader.

Layout (Kaggle's own names): ``root/train.csv`` (``id_code,diagnosis``, grade 0-4) and
``root/train_images/<id_code>.png``. APTOS publishes no patient ids, so every image is
its own patient for ``labels.split_by_patient``.
"""
from __future__ import annotations

import os
from typing import List

from data_pipelines.readers_common import SkipLog, attach_images, read_grade_rows, require_dir
from data_pipelines.dataset_format import GRADED, DatasetFormat
from data_pipelines.records import GradedExample

EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif")


def load_aptos(root: str, csv: str = "train.csv", image_dir: str = "train_images",
               strict: bool = False) -> List[GradedExample]:
    """GradedExamples of an APTOS folder, sorted by image id.

    ``csv`` and ``image_dir`` are relative to ``root`` (or absolute). ``strict`` raises
    instead of skipping rows whose image is missing or zero bytes.
    """
    root = require_dir(root, "APTOS root")
    csv_path = os.path.join(root, csv)
    images = require_dir(os.path.join(root, image_dir), "APTOS image folder")
    rows = read_grade_rows(csv_path, "id_code", "diagnosis")
    log = SkipLog("APTOS", strict)
    return log.finish(attach_images(rows, csv_path, images, log, extensions=EXTENSIONS), csv_path)


FORMAT = DatasetFormat("aptos", GRADED, load_aptos)
