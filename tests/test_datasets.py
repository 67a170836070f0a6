"""Dispatcher: format names reach the right reader; bad names and paths fail clearly."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_CLASSES, ConfigError
from data_pipelines.datasets import GRADED_READERS, MASK_READERS, load_graded, load_masks
from data_pipelines.records import DataError, GradedExample, MaskExample


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w" if isinstance(content, str) else "wb") as handle:
        handle.write(content)


def test_graded_formats_reach_their_readers(tmp_path):
    eyepacs = tmp_path / "eyepacs"
    write(str(eyepacs / "retinopathy_solution.csv"),
          "image,level,Usage\n1_left,2,Public\n1_right,3,Private\n")
    write(str(eyepacs / "1_left.jpeg"), b"jpeg")
    write(str(eyepacs / "1_right.jpeg"), b"jpeg")
    public = load_graded("eyepacs", str(eyepacs), usage="public")  # kwargs pass through
    assert public == [GradedExample(str(eyepacs / "1_left.jpeg"), 2, "1_left", "1")]
    aptos = tmp_path / "aptos"
    write(str(aptos / "train.csv"), "id_code,diagnosis\nabc,4\n")
    write(str(aptos / "train_images" / "abc.png"), b"png")
    assert [e.grade for e in load_graded("aptos", str(aptos))] == [4]
    assert set(GRADED_READERS) == {"eyepacs", "aptos", "idrid_grading"}


def test_mask_formats_reach_their_readers(tmp_path):
    generic = tmp_path / "lesions"
    os.makedirs(generic / "images")
    assert cv2.imwrite(str(generic / "images" / "s1.jpg"), np.zeros((4, 4, 3), np.uint8))
    os.makedirs(generic / "masks" / "drusen")
    assert cv2.imwrite(str(generic / "masks" / "drusen" / "s1.png"), np.ones((4, 4), np.uint8))
    examples = load_masks("generic", str(generic), LESION_CLASSES)
    assert len(examples) == 1 and isinstance(examples[0], MaskExample)
    assert examples[0].image_labels == (0, 0, 0, 0, 1, 0)  # drusen is the 5th foreground class
    assert set(MASK_READERS) == {"generic", "idrid", "voc", "diaretdb1", "heimed"}


def test_unknown_format_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"'kaggle'.*'eyepacs', 'aptos', 'idrid_grading'"):
        load_graded("kaggle", str(tmp_path))
    with pytest.raises(ConfigError, match=r"'coco'.*'generic', 'idrid', 'voc'"):
        load_masks("coco", str(tmp_path), LESION_CLASSES)


def test_missing_path_is_named(tmp_path):
    missing = str(tmp_path / "no_such_set")
    with pytest.raises(DataError, match="no_such_set"):
        load_graded("aptos", missing)
    with pytest.raises(DataError, match="no_such_set"):
        load_masks("voc", missing, LESION_CLASSES)
