"""Generic mask-set reader: binary masks/ and labels/ layouts, classes.txt, grades.csv."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_CLASSES, ConfigError
from data_pipelines.masks import load_mask_set
from data_pipelines.records import DataError

CLASSES = ("background", "hard_exudate", "haemorrhage", "drusen")


def write_png(path, value=1):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, np.full((6, 6), value, np.uint8))


def write_text(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def synthetic_like(root, masks):
    """What the synthetic generator writes: images/<id>.jpg, masks only where non-empty."""
    for image_id, classes in masks.items():
        os.makedirs(os.path.join(root, "images"), exist_ok=True)
        assert cv2.imwrite(os.path.join(root, "images", f"{image_id}.jpg"),
                           np.zeros((6, 6, 3), np.uint8))
        for name in classes:
            write_png(os.path.join(root, "masks", name, f"{image_id}.png"))


def test_binary_layout_mask_order_labels_and_grades(tmp_path):
    root = str(tmp_path)
    synthetic_like(root, {"s002": ["drusen"], "s001": ["hard_exudate", "haemorrhage"], "s003": []})
    write_text(os.path.join(root, "grades.csv"), "image,level\ns001,3\ns002,1\ns003,0\n")
    examples = load_mask_set(root, CLASSES)
    assert [e.image_id for e in examples] == ["s001", "s002", "s003"]
    first = examples[0]
    assert first.mask_paths == (os.path.join(root, "masks", "hard_exudate", "s001.png"),
                                os.path.join(root, "masks", "haemorrhage", "s001.png"), "")
    assert [e.image_labels for e in examples] == [(1, 1, 0), (0, 0, 1), (0, 0, 0)]
    assert [e.grade for e in examples] == [3, 1, 0]
    assert first.label_path == ""


def test_without_grades_csv_grade_is_unknown_and_missing_rows_logged(tmp_path, caplog):
    root = str(tmp_path)
    synthetic_like(root, {"a": ["drusen"], "b": []})
    assert [e.grade for e in load_mask_set(root, CLASSES)] == [-1, -1]
    write_text(os.path.join(root, "grades.csv"), "image,level\na,2\nzz,1\n")
    assert [e.grade for e in load_mask_set(root, CLASSES)] == [2, -1]
    assert "no row in grades.csv" in caplog.text
    assert "grades.csv row without an image" in caplog.text


def test_unknown_class_folder_names_folder_and_known_classes(tmp_path):
    root = str(tmp_path)
    synthetic_like(root, {"a": ["hard_exudate", "cotton_wool"]})
    with pytest.raises(DataError) as err:
        load_mask_set(root, CLASSES)
    assert "cotton_wool" in str(err.value) and "'haemorrhage'" in str(err.value)


def test_classes_txt_must_agree(tmp_path):
    root = str(tmp_path)
    synthetic_like(root, {"a": ["drusen"]})
    write_text(os.path.join(root, "classes.txt"), "\n".join(CLASSES[1:]) + "\n")
    assert len(load_mask_set(root, CLASSES)) == 1  # foreground-only list is fine
    write_text(os.path.join(root, "classes.txt"), "\n".join(LESION_CLASSES) + "\n")
    with pytest.raises(DataError, match="classes.txt"):
        load_mask_set(root, CLASSES)
    assert len(load_mask_set(root, LESION_CLASSES)) == 1


def test_label_map_layout(tmp_path):
    root = str(tmp_path)
    synthetic_like(root, {"a": [], "b": [], "c": []})
    for image_id in ("a", "b"):
        write_png(os.path.join(root, "labels", f"{image_id}.png"), value=2)
    examples = load_mask_set(root, CLASSES)
    assert [(e.image_id, e.label_path, e.mask_paths, e.image_labels) for e in examples] == [
        ("a", os.path.join(root, "labels", "a.png"), (), ()),
        ("b", os.path.join(root, "labels", "b.png"), (), ())]
    with pytest.raises(DataError, match="without a label map.*c.jpg"):
        load_mask_set(root, CLASSES, strict=True)


def test_both_or_neither_annotation_folder_is_error(tmp_path):
    root = str(tmp_path)
    synthetic_like(root, {"a": []})
    with pytest.raises(DataError, match="neither"):
        load_mask_set(root, CLASSES)
    write_png(os.path.join(root, "masks", "drusen", "a.png"))
    write_png(os.path.join(root, "labels", "a.png"))
    with pytest.raises(DataError, match="both"):
        load_mask_set(root, CLASSES)


def test_mask_without_image_and_zero_byte_files(tmp_path, caplog):
    root = str(tmp_path)
    synthetic_like(root, {"a": ["drusen"], "b": ["drusen"], "c": []})
    write_png(os.path.join(root, "masks", "haemorrhage", "ghost.png"))
    open(os.path.join(root, "masks", "drusen", "b.png"), "wb").close()
    open(os.path.join(root, "images", "c.jpg"), "wb").close()
    assert [e.image_id for e in load_mask_set(root, CLASSES)] == ["a"]
    assert "ghost.png" in caplog.text and "zero-byte mask" in caplog.text
    with pytest.raises(DataError, match="ghost.png"):
        load_mask_set(root, CLASSES, strict=True)


def test_bad_inputs_name_the_path(tmp_path):
    with pytest.raises(DataError, match="missing_set"):
        load_mask_set(str(tmp_path / "missing_set"), CLASSES)
    with pytest.raises(DataError, match="images"):
        load_mask_set(str(tmp_path), CLASSES)
    with pytest.raises(ConfigError):
        load_mask_set(str(tmp_path), ("background",))
    synthetic_like(str(tmp_path), {"a": ["drusen"]})
    write_text(str(tmp_path / "grades.csv"), "image,level\na,6\n")
    with pytest.raises(DataError, match=r"grades.csv:2"):
        load_mask_set(str(tmp_path), CLASSES)
