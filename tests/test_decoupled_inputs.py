"""DecoupledNet's inputs (coopseg/training/decoupled_inputs.py): labels, strong subsets, pairs."""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import IGNORE_LABEL, ConfigError
from coopseg.training.decoupled_inputs import (build_decoupled_inputs, class_pair_batches,
                                               expand_class_pairs, image_label_source,
                                               load_training_subset, with_image_labels)
from data_pipelines.labels import strong_subset
from data_pipelines.records import DataError, MaskExample
from experiments.decouplednet_stages import decoupled_experiment

CLASSES = ("background", "cat", "dog")


def _hand_masks() -> np.ndarray:
    """Two 4x4 masks: image 0 has classes 0 ("cat", value 1) and 1 ("dog", 2) and ignore
    pixels; image 1 is background only."""
    m = np.zeros((2, 4, 4), np.int32)
    m[0, 0, :2] = 1
    m[0, 3, 3] = 2
    m[0, 1, 1] = IGNORE_LABEL
    return m


def test_expand_class_pairs_on_a_hand_built_mask():
    masks = _hand_masks()
    images = np.stack([np.full((4, 4, 3), 10.0), np.full((4, 4, 3), 20.0)]).astype(np.float32)
    (pair_images, pair_classes), targets = expand_class_pairs(images, masks, num_classes=2)
    assert pair_classes.numpy().tolist() == [0, 1]  # image 1 has no class: no pair
    np.testing.assert_array_equal(pair_images.numpy(), images[[0, 0]])
    cat = np.zeros((4, 4), np.int32)
    cat[0, :2] = 1
    cat[1, 1] = IGNORE_LABEL
    dog = np.zeros((4, 4), np.int32)
    dog[3, 3] = 2  # z^l written with the class's index: foreground = nonzero
    dog[1, 1] = IGNORE_LABEL
    np.testing.assert_array_equal(targets.numpy(), np.stack([cat, dog]))


def test_class_pair_batches_visit_every_pair_once():
    masks = np.zeros((4, 4, 4), np.int32)
    masks[0, 0, 0] = 1          # (0, cat)
    masks[1, 0, 0], masks[1, 1, 1] = 1, 2  # (1, cat), (1, dog)
    masks[3, 2, 2] = 2          # (3, dog); image 2 has no class
    images = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 4, 4, 3), np.float32)
    batches = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    pairs = class_pair_batches(batches, num_classes=2, batch_size=2, seed=0)
    seen = []
    for (pair_images, classes), targets in pairs:
        assert pair_images.shape == (2, 4, 4, 3) and targets.shape == (2, 4, 4)
        for image, cls, target in zip(pair_images.numpy(), classes.numpy(), targets.numpy()):
            index = int(image[0, 0, 0])
            np.testing.assert_array_equal(target, np.where(masks[index] == cls + 1, cls + 1, 0))
            seen.append((index, int(cls)))
    assert sorted(seen) == [(0, 0), (1, 0), (1, 1), (3, 1)]


def _write_mask_set(root: str, masks: np.ndarray, layout: str) -> None:
    """A generic mask set (``masks/`` binary per class or ``labels/`` index maps)."""
    os.makedirs(os.path.join(root, "images"))
    rng = np.random.default_rng(0)
    for i, mask in enumerate(masks):
        image_id = f"img{i:02d}"
        cv2.imwrite(os.path.join(root, "images", f"{image_id}.png"),
                    rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8))
        if layout == "labels":
            os.makedirs(os.path.join(root, "labels"), exist_ok=True)
            cv2.imwrite(os.path.join(root, "labels", f"{image_id}.png"), mask.astype(np.uint8))
            continue
        for value, name in enumerate(CLASSES[1:], start=1):
            if (mask == value).any():
                os.makedirs(os.path.join(root, "masks", name), exist_ok=True)
                cv2.imwrite(os.path.join(root, "masks", name, f"{image_id}.png"),
                            (mask == value).astype(np.uint8) * 255)


def _masks(n: int = 12, size: int = 36) -> np.ndarray:
    """Image i holds "cat" when i % 2 == 0 and "dog" when i % 3 == 0 (both, one or none)."""
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            masks[i, 4:14, 4:14] = 1
        if i % 3 == 0:
            masks[i, 20:30, 20:30] = 2
    return masks


def test_with_image_labels_derives_missing_labels_from_label_maps(tmp_path):
    root = str(tmp_path / "set")
    masks = _masks(4)
    _write_mask_set(root, masks, "labels")
    examples = [MaskExample(image_path=f"{root}/images/img{i:02d}.png", image_id=f"img{i:02d}",
                            label_path=f"{root}/labels/img{i:02d}.png") for i in range(4)]
    examples[1] = dataclasses.replace(examples[1], image_labels=(1, 1))  # kept as given
    labelled = with_image_labels(examples, CLASSES)
    assert [e.image_labels for e in labelled] == [(1, 1), (1, 1), (1, 0), (0, 1)]
    with pytest.raises(DataError, match="image labels"):
        with_image_labels([dataclasses.replace(examples[0], image_labels=(1,))], CLASSES)


def _config(root_train: str, mode: str, per_class: int, method: str = "decouplednet"):
    cfg = decoupled_experiment("tiny", method=method, mode=mode, strong_per_class=per_class)
    cfg.model.num_seg_classes = len(CLASSES)
    cfg.data = dataclasses.replace(cfg.data, class_names=CLASSES, mask_priority=("cat", "dog"),
                                   masks_format="generic", masks_train=root_train, masks_val="",
                                   flip_left_right=False, flip_up_down=False,
                                   color_jitter="none")
    return cfg.validate()


@pytest.mark.parametrize("layout", ["masks", "labels"])
def test_strong_per_class_selects_the_seeded_subset(tmp_path, layout):
    root = str(tmp_path / "set")
    _write_mask_set(root, _masks(), layout)
    everything = load_training_subset(_config(root, "clf_only", 0))
    assert len(everything) == 12
    subset = load_training_subset(_config(root, "clf_only", 2))
    expected = strong_subset(everything, 2, CLASSES, seed=0)
    assert [e.image_id for e in subset] == [e.image_id for e in expected]
    assert 2 <= len(subset) <= 4
    for index in range(2):  # at least N images of each class
        assert sum(e.image_labels[index] for e in subset) >= 2
    with pytest.raises(ConfigError, match="strong_per_class"):
        load_training_subset(_config(root, "clf_only", -1))


def test_stage1_batches_carry_each_images_labels(tmp_path):
    root = str(tmp_path / "set")
    masks = _masks(6)
    _write_mask_set(root, masks, "masks")
    examples = load_training_subset(_config(root, "clf_only", 0))
    pixels_to_labels = {}
    for image, labels in image_label_source(examples):
        pixels_to_labels[image.numpy().tobytes()] = tuple(labels.numpy().tolist())
    for i, e in enumerate(examples):
        image = cv2.imread(e.image_path)[:, :, ::-1]
        assert pixels_to_labels[image.tobytes()] == (int(i % 2 == 0), int(i % 3 == 0))
    inputs = build_decoupled_inputs(_config(root, "clf_only", 0))
    images, labels = next(iter(inputs.clf_train))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 2)
    assert inputs.seg_train is None


def test_stage2_and_deconvnet_batches(tmp_path):
    root = str(tmp_path / "set")
    _write_mask_set(root, _masks(), "masks")
    (images, classes), targets = next(iter(build_decoupled_inputs(
        _config(root, "seg_only", 2)).seg_train))
    assert images.shape == (2, 32, 32, 3) and classes.shape == (2,)
    for cls, target in zip(classes.numpy(), targets.numpy()):
        assert set(np.unique(target)) == {0, cls + 1}  # only the pair's class is foreground
    images, masks = next(iter(build_decoupled_inputs(
        _config(root, "seg_only", 2, method="deconvnet")).seg_train))
    assert images.shape == (2, 32, 32, 3) and masks.shape == (2, 32, 32)
    assert set(np.unique(masks.numpy())) <= {0, 1, 2}
    joint = _config(root, "seg_only", 2)
    joint.train.mode = "joint"
    with pytest.raises(ConfigError, match="joint"):
        build_decoupled_inputs(joint)
