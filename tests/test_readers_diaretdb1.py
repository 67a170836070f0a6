"""DIARETDB1 reader on fixtures in its layout: expert XML shapes fused into masks, the
official split lists, and the quirks (unknown confidence, broken XML, unlisted images)."""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_CLASSES, LESION_PRIORITY, ConfigError, partial_label
from data_pipelines.datasets import load_masks
from data_pipelines.diaretdb1 import diaretdb1_class_names, fused_masks, load_diaretdb1
from data_pipelines.idrid import idrid_class_names
from data_pipelines.imageio import read_mask_example
from data_pipelines.records import DataError

WIDTH, HEIGHT = 60, 40
CLASSES = diaretdb1_class_names()  # background, microaneurysm, haemorrhage, hard, soft
SQUARE = "polygon:10,10;20,10;20,20;10,20"  # hard exudate, 11x11 px
CIRCLE = "circle:40,30;3"
ELLIPSE = "ellipse:45,10;6,2;0"


def region_xml(shape: str) -> str:
    kind, _, spec = shape.partition(":")
    if kind == "polygon":
        points = "".join(f"<coords2d>{p}</coords2d>" for p in spec.split(";"))
        return (f"<polygonregion><centroid><coords2d>15,15</coords2d></centroid>{points}"
                "</polygonregion>")
    parts = spec.split(";")
    centre = f"<centroid><coords2d>{parts[0]}</coords2d></centroid>"
    if kind == "circle":
        return f'<circleregion>{centre}<radius direction="x">{parts[1]}</radius></circleregion>'
    rx, ry = parts[1].split(",")
    return (f'<ellipseregion>{centre}<radius direction="x">{rx}</radius>'
            f'<radius direction="y">{ry}</radius><rotangle>{parts[2]}</rotangle>'
            "</ellipseregion>")


def marking_xml(markings) -> str:
    """An imgannotool file; ``markings`` = [(type, confidence, shape spec)]."""
    body = "".join(
        f"<marking>{region_xml(shape)}<representativepoint><coords2d>1,1</coords2d>"
        f"</representativepoint><confidencelevel>{conf}</confidencelevel>"
        f"<markingtype>{kind}</markingtype></marking>" for kind, conf, shape in markings)
    return (f'<?xml version="1.0" encoding="UTF-8"?><imgannotooldata><header><creator>t'
            f"</creator></header><imagename>x.png</imagename><imagesize><width>{WIDTH}</width>"
            f"<height>{HEIGHT}</height></imagesize><markinglist>{body}</markinglist>"
            "</imgannotooldata>")


def diaretdb1(root, experts_of, train=(), test=()):
    """DIARETDB1 v2.1 under ``root/ddb1_v02_01``; ``experts_of`` maps image number ->
    a list (one per expert) of marking lists."""
    base = os.path.join(str(root), "ddb1_v02_01")
    os.makedirs(os.path.join(base, "images"), exist_ok=True)
    os.makedirs(os.path.join(base, "groundtruth"), exist_ok=True)
    for number, experts in experts_of.items():
        image_id = f"diaretdb1_image{number:03d}"
        image = np.full((HEIGHT, WIDTH, 3), 60 + number, np.uint8)  # distinct content
        assert cv2.imwrite(os.path.join(base, "images", image_id + ".png"), image)
        for k, markings in enumerate(experts, 1):
            with open(os.path.join(base, "groundtruth", f"{image_id}_{k:02d}.xml"), "w") as f:
                f.write(marking_xml(markings))
    # The non-plain list names the image and its expert files; the plain one the image.
    with open(os.path.join(base, "ddb1_v02_01_train.txt"), "w") as f:
        for n in train:
            f.write(f"images/diaretdb1_image{n:03d}.png " + " ".join(
                f"groundtruth/diaretdb1_image{n:03d}_{k:02d}.xml" for k in range(1, 5)) + "\n")
    with open(os.path.join(base, "ddb1_v02_01_test_plain.txt"), "w") as f:
        f.writelines(f"diaretdb1_image{n:03d}.png\n" for n in test)
    return base


def four_experts(*per_expert):
    return [list(markings) for markings in per_expert]


HARD_BY_THREE = four_experts([("Hard_exudates", "High", SQUARE)],
                             [("Hard_exudates", "High", SQUARE)],
                             [("Hard_exudates", "High", SQUARE), ("IRMA", "High", CIRCLE)],
                             [])


def test_experts_fuse_at_mean_confidence_three_quarters(tmp_path):
    base = diaretdb1(tmp_path, {1: four_experts(
        [("Hard_exudates", "High", SQUARE), ("Haemorrhages", "High", CIRCLE),
         ("Red_small_dots", "Medium", ELLIPSE)],
        [("Hard_exudates", "High", SQUARE), ("Haemorrhages", "High", CIRCLE),
         ("Red_small_dots", "Medium", ELLIPSE)],
        [("Hard_exudates", "High", SQUARE), ("Red_small_dots", "Medium", ELLIPSE)],
        [("Hard_exudates", "Low", SQUARE), ("Red_small_dots", "Medium", ELLIPSE)])},
        train=[1])
    xml = sorted(os.path.join(base, "groundtruth", n) for n in os.listdir(
        os.path.join(base, "groundtruth")))
    masks = fused_masks(xml, CLASSES, HEIGHT, WIDTH)
    hard, haem, ma = (masks[CLASSES.index(n)] for n in
                      ("hard_exudate", "haemorrhage", "microaneurysm"))
    # Hard exudate: (1 + 1 + 1 + 1/3) / 4 = 0.83 >= 0.75; the whole 11 x 11 square.
    assert hard[10:21, 10:21].all() and hard.sum() == 121
    # Haemorrhage: two of four experts at high = 0.5; microaneurysm: all at medium = 0.67.
    assert not haem.any() and not ma.any()
    loose = fused_masks(xml, CLASSES, HEIGHT, WIDTH, threshold=0.5)
    assert loose[CLASSES.index("haemorrhage")][30, 40] and loose[CLASSES.index(
        "microaneurysm")][10, 45]
    # The ellipse is 6 px wide and 2 px tall, as drawn.
    ellipse = loose[CLASSES.index("microaneurysm")]
    assert ellipse[10, 39:52].all() and not ellipse[13, 45] and not ellipse[10, 53]
    levels = {"low": 0.25, "medium": 0.8, "high": 1.0}
    assert fused_masks(xml, CLASSES, HEIGHT, WIDTH, confidence=levels)[
        CLASSES.index("microaneurysm")].sum() == ellipse.sum()


def test_split_lists_are_honoured_and_labels_follow_the_fused_masks(tmp_path, caplog):
    diaretdb1(tmp_path, {1: HARD_BY_THREE, 2: four_experts([], [], [], []),
                         3: four_experts([("Soft_exudates", "High", CIRCLE)] * 1,
                                         [("Soft_exudates", "High", CIRCLE)], [], [])},
              train=[1, 3], test=[2])
    with caplog.at_level(logging.INFO, logger="absl"):
        train = load_diaretdb1(str(tmp_path))
    assert [e.image_id for e in train] == ["diaretdb1_image001", "diaretdb1_image003"]
    assert train[0].image_labels == (0, 0, 1, 0)  # hard exudate agreed on
    assert train[1].image_labels == (0, 0, 0, 0)  # soft exudate by two of four: not fused
    assert train[0].annotated == ()  # the four classes of DIARETDB1: fully annotated
    assert "marking type IRMA: 1" in caplog.text
    # Validation reads the official test list.
    val = load_masks("diaretdb1", str(tmp_path), CLASSES, role="val")
    assert [e.image_id for e in val] == ["diaretdb1_image002"]
    assert len(load_diaretdb1(str(tmp_path), split=None)) == 3
    assert CLASSES == idrid_class_names()  # the two public sets train together


def test_decoded_mask_is_at_the_photo_resolution_and_partial_for_other_classes(tmp_path):
    diaretdb1(tmp_path, {1: HARD_BY_THREE}, train=[1])
    example, = load_diaretdb1(str(tmp_path), class_names=LESION_CLASSES)
    # DIARETDB1 does not mark drusen or artefacts: unmarked pixels are not "absent".
    assert example.annotated == (1, 1, 1, 1, 0, 0) and example.is_partial
    image, mask = read_mask_example(example, LESION_CLASSES, LESION_PRIORITY)
    assert image.shape == (HEIGHT, WIDTH, 3) and mask.shape == (HEIGHT, WIDTH)
    assert (mask[10:21, 10:21] == LESION_CLASSES.index("hard_exudate")).all()
    assert mask[0, 0] == partial_label((1, 1, 1, 1, 0, 0))


def test_quirks_are_named_errors_or_counted_skips(tmp_path, caplog):
    base = diaretdb1(tmp_path, {1: HARD_BY_THREE, 2: HARD_BY_THREE}, train=[1, 2, 9])
    os.remove(os.path.join(base, "groundtruth", "diaretdb1_image002_01.xml"))
    for k in range(2, 5):
        os.remove(os.path.join(base, "groundtruth", f"diaretdb1_image002_{k:02d}.xml"))
    with caplog.at_level(logging.WARNING, logger="absl"):
        examples = load_diaretdb1(str(tmp_path))
    assert [e.image_id for e in examples] == ["diaretdb1_image001"]
    assert "no expert marking file" in caplog.text and "diaretdb1_image009" in caplog.text
    with pytest.raises(DataError, match="strict"):
        load_diaretdb1(str(tmp_path), strict=True)

    bad = os.path.join(base, "groundtruth", "diaretdb1_image001_02.xml")
    with open(bad, "w") as f:
        f.write(marking_xml([("Hard_exudates", "Sure", SQUARE)]))
    with pytest.raises(DataError, match=r"diaretdb1_image001_02\.xml.*confidence level.*sure"):
        load_diaretdb1(str(tmp_path))
    with open(bad, "w") as f:
        f.write("<imgannotooldata><marking>")
    with pytest.raises(DataError, match=r"diaretdb1_image001_02\.xml: not a readable"):
        load_diaretdb1(str(tmp_path))
    with open(bad, "w") as f:
        f.write(marking_xml([("Hard_exudates", "High", "polygon:10;20,10;20,20")]))
    with pytest.raises(DataError, match=r"_02\.xml: coords2d '10' is not 'x,y'"):
        load_diaretdb1(str(tmp_path))
    os.remove(os.path.join(base, "ddb1_v02_01_test_plain.txt"))
    with pytest.raises(DataError, match="no test list"):
        load_diaretdb1(str(tmp_path), split="test")
    with pytest.raises(ConfigError, match="split='val'"):
        load_diaretdb1(str(tmp_path), split="val")
    with pytest.raises(ConfigError, match="threshold"):
        load_diaretdb1(str(tmp_path), threshold=0)
