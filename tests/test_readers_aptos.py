"""APTOS 2019 reader: Kaggle layout, overrides, and the shared hard-input policy."""
from __future__ import annotations

import os

import pytest

from data_pipelines.aptos import load_aptos
from data_pipelines.records import DataError


def write(path, content=b"\x89PNG fake bytes: the reader never decodes pixels"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w" if isinstance(content, str) else "wb") as handle:
        handle.write(content)


def aptos(root, rows, csv="train.csv", image_dir="train_images"):
    write(os.path.join(root, csv), "id_code,diagnosis\n" + "".join(f"{i},{g}\n" for i, g in rows))
    for image_id, _ in rows:
        write(os.path.join(root, image_dir, f"{image_id}.png"))


def test_pairs_png_images_with_diagnosis_sorted(tmp_path):
    root = str(tmp_path)
    aptos(root, [("ffa47f6a7bf4", 2), ("000c1434d8d7", 0), ("0a4e1a29ffff", 4)])
    examples = load_aptos(root)
    assert [(e.image_id, e.grade) for e in examples] == [
        ("000c1434d8d7", 0), ("0a4e1a29ffff", 4), ("ffa47f6a7bf4", 2)]
    assert examples[0].image_path == os.path.join(root, "train_images", "000c1434d8d7.png")
    assert examples[0].patient_id == "000c1434d8d7"  # APTOS has no patient ids


def test_custom_csv_and_image_folder(tmp_path):
    root = str(tmp_path)
    aptos(root, [("a1", 1)], csv="valid.csv", image_dir="val_images")
    assert load_aptos(root, csv="valid.csv", image_dir="val_images")[0].grade == 1


def test_test_csv_without_diagnosis_column_is_named(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "test.csv"), "id_code\nabc\n")
    write(os.path.join(root, "train_images", "abc.png"))
    with pytest.raises(DataError) as err:
        load_aptos(root, csv="test.csv")
    assert "test.csv" in str(err.value) and "diagnosis" in str(err.value)


def test_missing_image_folder_and_missing_image(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, "train.csv"), "id_code,diagnosis\na,0\nb,1\n")
    with pytest.raises(DataError, match="train_images"):
        load_aptos(root)
    write(os.path.join(root, "train_images", "a.png"))
    assert [e.image_id for e in load_aptos(root)] == ["a"]
    with pytest.raises(DataError, match=r"no image file.*b \(train.csv line 3\)"):
        load_aptos(root, strict=True)


def test_grade_out_of_range_names_line(tmp_path):
    root = str(tmp_path)
    aptos(root, [("a", 0), ("b", 7)])
    with pytest.raises(DataError, match=r"train.csv:3.*'7'"):
        load_aptos(root)
