"""Validation is held out: the split a role means, overlap refused, one input path for
every method (coopseg/training/examples.py, inputs.py, decoupled_inputs.py)."""
from __future__ import annotations

import dataclasses
import os
import shutil

import cv2
import numpy as np
import pytest

from coopseg.config import ConfigError, use_class_names
from coopseg.training.decoupled_inputs import build_decoupled_inputs, load_training_subset
from coopseg.training.examples import check_held_out, graded_examples, input_seeds, mask_examples
from coopseg.training.inputs import graded_and_mask_inputs, validation_gaps
from coopseg.training.loop import Inputs
from data_pipelines.decode import DecodeReport
from data_pipelines.idrid import idrid_class_names
from experiments.decouplednet_stages import decoupled_experiment
from experiments.scales import experiment

SEG, GRADING = "A. Segmentation", "B. Disease Grading"
SPLIT_DIRS = {"train": "a. Training Set", "test": "b. Testing Set"}


def _photo(path: str, value: int, size: int = 32) -> None:
    """A distinct image per ``value``: no two fixture photos share their bytes."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = np.full((size, size, 3), value % 256, np.uint8)
    image[: value % size, 0] = 255 - value % 256
    assert cv2.imwrite(path, image)


def _idrid(root: str) -> None:
    """IDRiD's public layout, both parts: training images 01-03, testing images 55-56."""
    for k, (split, ids) in enumerate((("train", [1, 2, 3]), ("test", [55, 56]))):
        for i in ids:
            name = f"IDRiD_{i:02d}"
            _photo(os.path.join(root, SEG, "1. Original Images", SPLIT_DIRS[split],
                                name + ".jpg"), 7 * i)
            mask = os.path.join(root, SEG, "2. All Segmentation Groundtruths", SPLIT_DIRS[split],
                                "2. Haemorrhages", f"{name}_HE.tif")
            os.makedirs(os.path.dirname(mask), exist_ok=True)
            lesion = np.zeros((32, 32, 3), np.uint8)
            lesion[4:8, 4:8, 2] = 255
            assert cv2.imwrite(mask, lesion)
            _photo(os.path.join(root, GRADING, "1. Original Images", SPLIT_DIRS[split],
                                f"IDRiD_{i:03d}.jpg"), 11 * i + 1)
        labels = os.path.join(root, GRADING, "2. Groundtruths",
                              ("a. IDRiD_Disease Grading_Training Labels.csv",
                               "b. IDRiD_Disease Grading_Testing Labels.csv")[k])
        os.makedirs(os.path.dirname(labels), exist_ok=True)
        with open(labels, "w") as f:
            f.write("Image name,Retinopathy grade,Risk of macular edema \n")
            f.writelines(f"IDRiD_{i:03d},{i % 5},0\n" for i in ids)


def _idrid_config(root: str):
    cfg = experiment("tiny")
    d = cfg.data
    d.graded_format, d.graded_train, d.graded_val = "idrid", root, root  # the earlier name
    d.masks_format, d.masks_train, d.masks_val = "idrid", root, root
    use_class_names(cfg, idrid_class_names())
    return cfg.validate()


def test_idrid_validation_reads_the_testing_set(tmp_path):
    root = str(tmp_path / "IDRiD")
    _idrid(root)
    cfg = _idrid_config(root)
    assert [e.image_id for e in mask_examples(cfg, "train")] == ["IDRiD_01", "IDRiD_02", "IDRiD_03"]
    val = mask_examples(cfg, "val")
    assert [e.image_id for e in val] == ["IDRiD_55", "IDRiD_56"]
    assert all(SPLIT_DIRS["test"] in e.image_path for e in val)
    assert [e.image_id for e in graded_examples(cfg, "val")] == ["IDRiD_055", "IDRiD_056"]
    assert [e.image_id for e in graded_examples(cfg, "train")] == [
        "IDRiD_001", "IDRiD_002", "IDRiD_003"]
    # Through the trainer's inputs: two validation images, not the three training ones.
    inputs = graded_and_mask_inputs(cfg)
    assert sum(int(images.shape[0]) for images, _ in inputs.seg_val) == 2
    assert sum(int(images.shape[0]) for images, _ in inputs.clf_val) == 2


def _generic_mask_set(root: str, values) -> None:
    for i, value in enumerate(values):
        _photo(os.path.join(root, "images", f"im{i}.png"), value)
        mask = np.zeros((32, 32), np.uint8)
        mask[2:6, 2:6] = 255
        os.makedirs(os.path.join(root, "masks", "haemorrhage"), exist_ok=True)
        assert cv2.imwrite(os.path.join(root, "masks", "haemorrhage", f"im{i}.png"), mask)


def _mask_config(train: str, val: str, method: str = "jointseg"):
    cfg = (decoupled_experiment("tiny", method=method, mode="seg_only", strong_per_class=0) if method != "jointseg"
           else experiment("tiny"))
    d = cfg.data
    d.masks_format, d.masks_train, d.masks_val = "generic", train, val
    cfg.train.mode = "seg_only"
    return cfg


def test_a_validation_set_sharing_images_with_training_is_refused(tmp_path):
    train, copy = str(tmp_path / "train"), str(tmp_path / "copy")
    _generic_mask_set(train, [10, 20, 30, 40])
    shutil.copytree(train, copy)  # same content under other names
    _photo(os.path.join(copy, "images", "im3.png"), 99)  # one image really differs
    for val, shared in ((train, 4), (copy, 3)):
        cfg = _mask_config(train, val)
        with pytest.raises(ConfigError, match=rf"{shared} of the 4 mask validation images are "
                                              r"also training images.*--allow_val_overlap"):
            graded_and_mask_inputs(cfg)
    cfg = _mask_config(train, copy)
    cfg.data.allow_val_overlap = True  # the user's explicit choice: a warning, no error
    assert graded_and_mask_inputs(cfg).seg_val is not None


def test_overlap_check_on_graded_examples_and_a_disjoint_pair(tmp_path):
    root = str(tmp_path / "IDRiD")
    _idrid(root)
    cfg = _idrid_config(root)
    train, val = graded_examples(cfg, "train"), graded_examples(cfg, "val")
    check_held_out(train, val, "graded", allow_overlap=False)  # disjoint: passes
    with pytest.raises(ConfigError, match=r"1 of the 2 graded validation images.*IDRiD_055"):
        check_held_out(train + val[:1], val, "graded", allow_overlap=False)


@pytest.mark.parametrize("method", ["decouplednet", "deconvnet"])
def test_every_data_setting_reaches_the_decoupled_methods(tmp_path, method):
    train, val = str(tmp_path / "train"), str(tmp_path / "val")
    _generic_mask_set(train, [10, 20, 30, 40, 50, 60])
    _generic_mask_set(val, [110, 120])
    cfg = _mask_config(train, val, method)
    cfg.data.masks_train_count = 3
    joint = _mask_config(train, val)
    joint.data.masks_train_count = 3
    # One subset for every method: the same three images.
    assert sorted(e.image_id for e in load_training_subset(cfg)) == sorted(
        e.image_id for e in mask_examples(joint, "train"))
    assert len(load_training_subset(cfg)) == 3
    # validate_files decodes up front and drops (and reports) a corrupt image.
    with open(os.path.join(train, "images", "im0.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not an image")
    cfg.data.masks_train_count, cfg.data.validate_files = 0, True
    report = DecodeReport()
    assert len(load_training_subset(cfg, report)) == 5
    assert any("im0.png" in path for path in report.bad_files)
    # The held-out check guards this path too.
    cfg.data.masks_val = train
    with pytest.raises(ConfigError, match="also training images"):
        build_decoupled_inputs(cfg)


def test_seeds_are_one_formula_and_missing_validation_is_named():
    cfg = experiment("tiny")
    cfg.data.seed, cfg.train.seed = 3, 4
    assert input_seeds(cfg, 10) == input_seeds(dataclasses.replace(cfg), 10)
    assert (input_seeds(cfg, 10).order, input_seeds(cfg, 10).augment) == (7, 17)
    trained_only = Inputs(clf_train=object(), seg_train=object())
    assert validation_gaps(cfg, trained_only) == {
        "classifier": "no --graded_val: the classifier is never validated",
        "segmenter": "no --masks_val: the segmenter is never validated"}
    assert validation_gaps(cfg, Inputs(clf_train=1, clf_val=1, seg_train=1, seg_val=1)) == {}
    decoupled = decoupled_experiment("tiny", method="decouplednet", mode="clf_only", strong_per_class=0)
    assert "--masks_val" in validation_gaps(decoupled, Inputs(clf_train=1))["classifier"]


def test_a_refused_start_leaves_no_run_directory(tmp_path):
    from coopseg.training.train import train
    train_dir = str(tmp_path / "train")
    _generic_mask_set(train_dir, [10, 20, 30, 40])
    cfg = _mask_config(train_dir, train_dir)  # validation = training: refused
    cfg.run.model_dir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="also training images"):
        train(cfg.validate(), export=False)
    assert not os.path.exists(cfg.run.model_dir)
