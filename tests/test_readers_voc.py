"""VOC reader: real palette PNGs (written by a tiny zlib PNG writer; no PIL), devkit layout."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from coopseg.config import ConfigError
from data_pipelines import imageio
from data_pipelines.datasets import load_masks
from data_pipelines.records import DataError
from data_pipelines.voc import (VOC_CLASSES, load_voc, read_voc_label, voc_colormap,
                                voc_image_labels)


def write_palette_png(path, indices, palette=None):
    """An 8-bit palette PNG (colour type 3) like the devkit's SegmentationClass files."""
    imageio.write_palette_png(path, indices, voc_colormap() if palette is None else palette)


LABEL = np.array([[0, 0, 15, 15],
                  [0, 255, 15, 12],
                  [1, 1, 255, 12]], np.uint8)  # background, person, dog, aeroplane, ignore


def test_colormap_matches_the_devkit():
    cmap = voc_colormap()
    assert cmap[1].tolist() == [128, 0, 0] and cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]


def test_palette_png_reads_as_indices(tmp_path):
    path = str(tmp_path / "label.png")
    write_palette_png(path, LABEL)
    assert cv2.imread(path, cv2.IMREAD_UNCHANGED).ndim == 3  # OpenCV gives colours, not indices
    np.testing.assert_array_equal(read_voc_label(path), LABEL)
    labels = voc_image_labels(path)
    assert len(labels) == 20
    present = [VOC_CLASSES[i + 1] for i, on in enumerate(labels) if on]
    assert present == ["aeroplane", "dog", "person"]


def test_own_palette_and_black_padding_are_honoured(tmp_path):
    path = str(tmp_path / "label.png")
    palette = np.zeros((256, 3), np.uint8)  # black padding duplicates index 0's colour
    palette[1], palette[2], palette[255] = (10, 20, 30), (40, 50, 60), (255, 255, 255)
    indices = np.array([[0, 1], [2, 255]], np.uint8)
    write_palette_png(path, indices, palette)
    np.testing.assert_array_equal(read_voc_label(path), indices)


def test_grey_and_rgb_colormap_pngs(tmp_path):
    grey = str(tmp_path / "grey.png")  # SegmentationClassAug style
    assert cv2.imwrite(grey, LABEL)
    np.testing.assert_array_equal(read_voc_label(grey), LABEL)
    rgb = str(tmp_path / "rgb.png")  # colour PNG without palette: the VOC colormap applies
    assert cv2.imwrite(rgb, voc_colormap()[LABEL][..., ::-1])
    np.testing.assert_array_equal(read_voc_label(rgb), LABEL)
    odd = voc_colormap()[LABEL][..., ::-1].copy()
    odd[0, 0] = (1, 2, 3)
    assert cv2.imwrite(rgb, odd)
    with pytest.raises(DataError, match="rgb.png.*outside the palette"):
        read_voc_label(rgb)


def test_indices_beyond_the_classes_are_a_data_bug(tmp_path):
    path = str(tmp_path / "bad.png")
    write_palette_png(path, np.array([[0, 30]], np.uint8))
    with pytest.raises(DataError, match=r"bad.png.*\[30\]"):
        voc_image_labels(path)


def voc_devkit(root, labels, splits):
    """VOCdevkit/VOC2012 with one palette label per id in ``labels`` and split files."""
    voc = os.path.join(root, "VOCdevkit", "VOC2012")
    for image_id, label in labels.items():
        os.makedirs(os.path.join(voc, "JPEGImages"), exist_ok=True)
        assert cv2.imwrite(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"),
                           np.zeros((label.shape[0], label.shape[1], 3), np.uint8))
        write_palette_png(os.path.join(voc, "SegmentationClass", f"{image_id}.png"), label)
    os.makedirs(os.path.join(voc, "ImageSets", "Segmentation"), exist_ok=True)
    for split, ids in splits.items():
        with open(os.path.join(voc, "ImageSets", "Segmentation", f"{split}.txt"), "w") as handle:
            handle.write("".join(f"{i}\n" for i in ids))
    return voc


def test_load_voc_from_devkit_or_voc2012(tmp_path):
    voc = voc_devkit(str(tmp_path), {
        "2007_000032": np.array([[0, 1], [1, 255]], np.uint8),
        "2007_000039": np.array([[0, 20], [15, 0]], np.uint8),
        "2007_000063": np.array([[0, 8]], np.uint8)},
        {"train": ["2007_000039", "2007_000032"], "val": ["2007_000063"]})
    examples = load_voc(str(tmp_path / "VOCdevkit"))
    assert [e.image_id for e in examples] == ["2007_000032", "2007_000039"]
    assert examples[0].label_path == os.path.join(voc, "SegmentationClass", "2007_000032.png")
    assert examples[0].image_path == os.path.join(voc, "JPEGImages", "2007_000032.jpg")
    assert examples[0].image_labels == (1,) + (0,) * 19
    assert examples[1].image_labels[14] == 1 and examples[1].image_labels[19] == 1
    assert sum(examples[1].image_labels) == 2
    val = load_voc(voc, split="val", with_image_labels=False, class_names=VOC_CLASSES)
    assert [(e.image_id, e.image_labels) for e in val] == [("2007_000063", ())]


def test_a_split_file_path_selects_its_split(tmp_path):
    voc = voc_devkit(str(tmp_path), {"t": np.zeros((2, 2), np.uint8), "v": np.ones((2, 2), np.uint8)},
                     {"train": ["t"], "val": ["v"]})
    val_file = os.path.join(voc, "ImageSets", "Segmentation", "val.txt")
    # How data.masks_val names VOC's val split (load_masks passes no split).
    assert [e.image_id for e in load_masks("voc", val_file, VOC_CLASSES)] == ["v"]
    assert [e.image_id for e in load_masks("voc", voc, VOC_CLASSES)] == ["t"]
    stray = tmp_path / "val.txt"
    stray.write_text("v\n")
    with pytest.raises(DataError, match="ImageSets/Segmentation"):
        load_voc(str(stray))


def test_load_voc_bad_inputs(tmp_path, caplog):
    voc = voc_devkit(str(tmp_path), {"a": np.zeros((2, 2), np.uint8)}, {"train": ["a", "b", "a"]})
    assert [e.image_id for e in load_voc(voc)] == ["a"]
    assert "b.jpg" in caplog.text and "repeated id" in caplog.text
    with pytest.raises(DataError, match="b.jpg"):
        load_voc(voc, strict=True)
    with pytest.raises(DataError, match=r"test.txt.*\['train'\]"):
        load_voc(voc, split="test")
    with pytest.raises(ConfigError, match="21"):
        load_voc(voc, class_names=("background", "thing"))
    with pytest.raises(DataError, match="nope"):
        load_voc(str(tmp_path / "nope"))

