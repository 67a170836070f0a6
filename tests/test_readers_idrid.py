"""IDRiD reader on fixtures with the real folder names, colour TIF masks and CSV quirks."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_CLASSES, ConfigError
from data_pipelines.idrid import idrid_class_names, load_idrid_grading, load_idrid_segmentation
from data_pipelines.records import DataError

SEG = "A. Segmentation"
GT = "2. All Segmentation Groundtruths"
LESION_FOLDERS = {"MA": "1. Microaneurysms", "HE": "2. Haemorrhages", "EX": "3. Hard Exudates",
                  "SE": "4. Soft Exudates", "OD": "5. Optic Disc"}
SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}


def write_image(path, channels=3):
    """A real 8x8 image file; masks are colour TIFs like IDRiD's (red lesion pixels)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.zeros((8, 8, channels), np.uint8)
    image[2:4, 2:4, -1] = 255
    assert cv2.imwrite(path, image)


def idrid_segmentation(root, masks, split="train"):
    """IDRiD part A under ``root``; ``masks`` maps image id -> lesion codes present."""
    for image_id, codes in masks.items():
        write_image(os.path.join(root, SEG, "1. Original Images", SPLITS[split], f"{image_id}.jpg"))
        for code in codes:
            write_image(os.path.join(root, SEG, GT, SPLITS[split], LESION_FOLDERS[code],
                                     f"{image_id}_{code}.tif"))


def test_original_layout_pairs_masks_in_class_order(tmp_path):
    root = str(tmp_path)
    idrid_segmentation(root, {"IDRiD_02": ["MA", "HE", "EX", "OD"],
                              "IDRiD_01": ["MA", "HE", "EX", "SE", "OD"]})
    examples = load_idrid_segmentation(root)
    assert [e.image_id for e in examples] == ["IDRiD_01", "IDRiD_02"]
    gt = os.path.join(root, SEG, GT, SPLITS["train"])
    # idrid_class_names(): background, microaneurysm, haemorrhage, hard_exudate, soft_exudate
    assert examples[0].mask_paths == (
        os.path.join(gt, "1. Microaneurysms", "IDRiD_01_MA.tif"),
        os.path.join(gt, "2. Haemorrhages", "IDRiD_01_HE.tif"),
        os.path.join(gt, "3. Hard Exudates", "IDRiD_01_EX.tif"),
        os.path.join(gt, "4. Soft Exudates", "IDRiD_01_SE.tif"))
    assert examples[1].mask_paths[3] == ""  # no soft exudate file = no soft exudate
    assert examples[1].image_labels == (1, 1, 1, 0)
    assert examples[0].image_path.endswith(os.path.join("a. Training Set", "IDRiD_01.jpg"))
    assert examples[0].grade == -1


def test_segmentation_folder_itself_as_root_and_test_split(tmp_path):
    idrid_segmentation(str(tmp_path), {"IDRiD_55": ["HE"]}, split="test")
    examples = load_idrid_segmentation(str(tmp_path / SEG), split="test")
    assert [(e.image_id, e.image_labels) for e in examples] == [("IDRiD_55", (0, 1, 0, 0))]
    with pytest.raises(DataError, match="a. Training Set"):
        load_idrid_segmentation(str(tmp_path), split="train")
    with pytest.raises(ConfigError, match="split"):
        load_idrid_segmentation(str(tmp_path), split="val")


def test_optic_disc_and_coopseg_lesion_classes(tmp_path):
    root = str(tmp_path)
    idrid_segmentation(root, {"IDRiD_01": ["MA", "SE", "OD"]})
    with_od = load_idrid_segmentation(root, include_optic_disc=True)[0]
    assert idrid_class_names(True)[-1] == "optic_disc"
    assert with_od.mask_paths[-1].endswith("IDRiD_01_OD.tif")
    assert with_od.image_labels == (1, 0, 0, 1, 1)
    # The paper's 7 classes: hard_exudate, soft_exudate, haemorrhage, microaneurysm,
    # drusen, artifact; IDRiD has no drusen/artifact masks.
    paper = load_idrid_segmentation(root, class_names=LESION_CLASSES)[0]
    assert paper.image_labels == (0, 1, 0, 1, 0, 0)
    assert paper.mask_paths[1].endswith("IDRiD_01_SE.tif") and paper.mask_paths[4] == ""
    with pytest.raises(ConfigError, match="optic_disc"):
        load_idrid_segmentation(root, class_names=LESION_CLASSES, include_optic_disc=True)


def test_simplified_design_layout(tmp_path):
    root = str(tmp_path)
    write_image(os.path.join(root, "images", "IDRiD_03.jpg"))
    write_image(os.path.join(root, "images", "IDRiD_04.jpg"))
    write_image(os.path.join(root, "microaneurysms", "IDRiD_03_MA.tif"))
    write_image(os.path.join(root, "exudates", "IDRiD_04_EX.tif"))
    examples = load_idrid_segmentation(root)
    assert [(e.image_id, e.image_labels) for e in examples] == [
        ("IDRiD_03", (1, 0, 0, 0)), ("IDRiD_04", (0, 0, 1, 0))]


def test_unknown_suffix_and_mask_without_image(tmp_path, caplog):
    root = str(tmp_path)
    idrid_segmentation(root, {"IDRiD_01": ["MA"]})
    orphan = os.path.join(root, SEG, GT, SPLITS["train"], LESION_FOLDERS["HE"], "IDRiD_09_HE.tif")
    write_image(orphan)
    assert [e.image_id for e in load_idrid_segmentation(root)] == ["IDRiD_01"]
    assert "IDRiD_09_HE.tif" in caplog.text
    with pytest.raises(DataError, match="IDRiD_09_HE.tif"):
        load_idrid_segmentation(root, strict=True)
    write_image(os.path.join(root, SEG, GT, SPLITS["train"], "6. Other", "IDRiD_01_XX.tif"))
    with pytest.raises(DataError, match="IDRiD_01_XX.tif.*MA"):
        load_idrid_segmentation(root)


def test_zero_byte_mask_skips_the_image(tmp_path):
    root = str(tmp_path)
    idrid_segmentation(root, {"IDRiD_01": ["MA"], "IDRiD_02": ["MA"]})
    open(os.path.join(root, SEG, GT, SPLITS["train"], LESION_FOLDERS["MA"], "IDRiD_02_MA.tif"),
         "wb").close()
    assert [e.image_id for e in load_idrid_segmentation(root)] == ["IDRiD_01"]
    with pytest.raises(DataError, match="zero-byte mask.*IDRiD_02_MA.tif"):
        load_idrid_segmentation(root, strict=True)


# --- part B: disease grading ---------------------------------------------------------------

GRADING = "B. Disease Grading"
TRAIN_CSV = "a. IDRiD_Disease Grading_Training Labels.csv"


def idrid_grading(root, rows, csv_name=TRAIN_CSV, split="train"):
    """The real CSV shape: trailing-space header, empty trailing columns, ',,,' tail rows."""
    header = "Image name,Retinopathy grade,Risk of macular edema ,,\n"
    body = "".join(f"{i},{g},0,,\n" for i, g in rows) + ",,,,\n,,,,\n"
    path = os.path.join(root, GRADING, "2. Groundtruths", csv_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(header + body)
    for image_id, _ in rows:
        write_image(os.path.join(root, GRADING, "1. Original Images", SPLITS[split],
                                 f"{image_id}.jpg"))
    return path


def test_grading_reads_real_csv_quirks(tmp_path):
    root = str(tmp_path)
    idrid_grading(root, [("IDRiD_002", 3), ("IDRiD_001", 0), ("IDRiD_413", 4)])
    examples = load_idrid_grading(root)
    assert [(e.image_id, e.grade) for e in examples] == [
        ("IDRiD_001", 0), ("IDRiD_002", 3), ("IDRiD_413", 4)]
    assert examples[0].image_path.endswith(os.path.join("a. Training Set", "IDRiD_001.jpg"))
    assert [e.image_id for e in load_idrid_grading(str(tmp_path / GRADING))] == [
        "IDRiD_001", "IDRiD_002", "IDRiD_413"]


def test_grading_test_split_and_renamed_csv(tmp_path):
    root = str(tmp_path)
    idrid_grading(root, [("IDRiD_010", 2)], csv_name="IDRiD Testing Labels.csv", split="test")
    assert [(e.image_id, e.grade) for e in load_idrid_grading(root, split="test")] == [
        ("IDRiD_010", 2)]
    with pytest.raises(DataError, match="Training Labels.csv"):
        load_idrid_grading(root, split="train")


def test_grading_bad_grade_names_file_and_line(tmp_path):
    root = str(tmp_path)
    idrid_grading(root, [("IDRiD_001", 0), ("IDRiD_002", 9)])
    with pytest.raises(DataError) as err:
        load_idrid_grading(root)
    assert f"{TRAIN_CSV}:3" in str(err.value) and "'9'" in str(err.value)
