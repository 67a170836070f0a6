"""DIARETDB1 v2.1 reader: four experts' XML lesion markings fused into per-lesion masks.

DIARETDB1 (Kauppi et al., BMVC 2007, doi:10.5244/C.21.15): 89 PNG photos; four experts
marked lesions as circles, ellipses or polygons with a confidence level. Masks are drawn
at the photo's resolution and fused by the dataset's rule (mean expert confidence
>= 0.75); the official train/test lists are honoured.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from absl import logging

from coopseg.config import ConfigError
from data_pipelines.dataset_format import MASKS, DatasetFormat
from data_pipelines.readers_common import SkipLog, index_files, require_dir, usable_file
from data_pipelines.records import DataError, DrawnAnnotation, MaskExample

NAME = "diaretdb1"
# DIARETDB1 marking type -> coopseg class name (config.LESION_CLASSES spelling).
MARKING_CLASSES: Dict[str, str] = {
    "Red_small_dots": "microaneurysm",
    "Haemorrhages": "haemorrhage",
    "Hard_exudates": "hard_exudate",
    "Soft_exudates": "soft_exudate",
}
# Marked in DIARETDB1 but not lesion classes here (anatomy, vascular changes): counted.
OTHER_MARKINGS = ("IRMA", "Neovascularisation", "Disc", "Fundus_area")
# The experts chose one of three confidence levels (<50 %, >50 %, 100 %). We read them
# as 1/3, 2/3 and 1, so "mean >= 0.75" needs e.g. three of four experts at high
# confidence, or all four at least at medium. Both numbers are settings (docs/data.md).
DEFAULT_CONFIDENCE: Dict[str, float] = {"low": 1 / 3, "medium": 2 / 3, "moderate": 2 / 3,
                                        "high": 1.0}
DEFAULT_FUSION_THRESHOLD = 0.75
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".bmp")
_REGIONS = ("polygonregion", "circleregion", "ellipseregion")


def diaretdb1_class_names() -> Tuple[str, ...]:
    """Background plus the four lesions DIARETDB1 marks, in coopseg's spelling."""
    return ("background",) + tuple(MARKING_CLASSES.values())


@dataclass(frozen=True)
class Marking:
    """One expert's marking: its lesion type, confidence and drawn region."""

    kind: str                 # the DIARETDB1 marking type, e.g. "Hard_exudates"
    confidence: str           # the level as written, lower-cased
    shape: str                # polygon | circle | ellipse
    points: np.ndarray        # polygon vertices [N, 2] (x, y); circle/ellipse: centre [1, 2]
    radii: Tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0        # ellipse rotation in degrees


def _coords(element: ElementTree.Element, path: str) -> np.ndarray:
    text = (element.text or "").strip()
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    try:
        if len(parts) != 2:
            raise ValueError
        return np.array([float(parts[0]), float(parts[1])])
    except ValueError:
        raise DataError(f"{path}: coords2d {text!r} is not 'x,y'") from None


def _region(marking: ElementTree.Element, path: str) -> Optional[Tuple[str, np.ndarray,
                                                                         Tuple[float, float],
                                                                         float]]:
    regions = [child for child in marking if child.tag.lower() in _REGIONS]
    if not regions:
        return None
    if len(regions) > 1:
        raise DataError(f"{path}: a marking with {len(regions)} regions "
                        f"({[r.tag for r in regions]}); expected one")
    region = regions[0]
    shape = region.tag.lower().replace("region", "")
    centroid = region.find("centroid/coords2d")
    if shape == "polygon":
        points = np.array([_coords(c, path) for c in region.findall("coords2d")])
        if len(points) < 3:
            raise DataError(f"{path}: a polygon marking with {len(points)} vertices")
        return shape, points, (0.0, 0.0), 0.0
    if centroid is None:
        raise DataError(f"{path}: a {shape} marking without a centroid")
    radii = {}
    for k, radius in enumerate(region.findall("radius")):
        direction = radius.get("direction", "xy"[min(k, 1)]).lower()
        try:
            radii[direction] = float((radius.text or "").strip())
        except ValueError:
            raise DataError(f"{path}: {shape} radius {radius.text!r} is not a number") from None
    if not radii:
        raise DataError(f"{path}: a {shape} marking without a radius")
    rx = radii.get("x", next(iter(radii.values())))
    ry = radii.get("y", rx)
    angle_element = region.find("rotangle")
    try:
        angle = float((angle_element.text or "0").strip()) if angle_element is not None else 0.0
    except ValueError:
        raise DataError(f"{path}: ellipse rotangle {angle_element.text!r} is not a number") \
            from None
    return shape, _coords(centroid, path)[None], (rx, ry), angle


@dataclass(frozen=True)
class ExpertFile:
    """One expert's XML file, read: its lesion markings, counts of what was left out
    (``{"marking type X": n, "marking without a region": n}``) and the image size it
    states (height, width; None if it states none)."""

    path: str
    markings: Tuple[Marking, ...]
    left_out: Dict[str, int]
    size: Optional[Tuple[int, int]]


def read_expert_file(path: str) -> ExpertFile:
    """Parse one expert's XML file; DataError naming the file for XML that does not
    parse or shapes that cannot be drawn."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as err:
        raise DataError(f"{path}: not a readable DIARETDB1 marking file ({err})") from err
    markings: List[Marking] = []
    left_out: Dict[str, int] = {}
    for element in root.iter("marking"):
        kind = (element.findtext("markingtype") or "").strip()
        if kind not in MARKING_CLASSES:
            key = f"marking type {kind or '(none)'}"
            left_out[key] = left_out.get(key, 0) + 1
            continue
        region = _region(element, path)
        if region is None:
            left_out["marking without a region"] = left_out.get("marking without a region", 0) + 1
            continue
        confidence = (element.findtext("confidencelevel") or "").strip().lower()
        shape, points, radii, angle = region
        markings.append(Marking(kind, confidence, shape, points, radii, angle))
    width, height = root.findtext("imagesize/width"), root.findtext("imagesize/height")
    try:
        size = (int(height), int(width)) if width and height else None
    except ValueError:
        raise DataError(f"{path}: imagesize {width!r} x {height!r} is not two integers") from None
    return ExpertFile(path, tuple(markings), left_out, size)


def _draw(canvas: np.ndarray, marking: Marking, value: int) -> None:
    if marking.shape == "polygon":
        cv2.fillPoly(canvas, [np.round(marking.points).astype(np.int32)], value)
        return
    centre = tuple(int(round(v)) for v in marking.points[0])
    axes = tuple(max(1, int(round(r))) for r in marking.radii)
    cv2.ellipse(canvas, centre, axes, marking.angle, 0, 360, value, thickness=-1)


def confidence_table(text: str) -> Dict[str, float]:
    """``"low=0.33,medium=0.67,high=1"`` -> {level: value}; ConfigError when malformed."""
    table: Dict[str, float] = {}
    for item in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = item.partition("=")
        try:
            table[name.strip().lower()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"DIARETDB1 confidence levels {text!r}: write level=value,...")
    return table


def _table_text(table: Mapping[str, float]) -> str:
    return ",".join(f"{name}={value:.6g}" for name, value in table.items())


def fused_masks(xml_paths: Sequence[str], class_names: Sequence[str], height: int, width: int,
                threshold: float = DEFAULT_FUSION_THRESHOLD,
                confidence: Optional[Mapping[str, float]] = None) -> Dict[int, np.ndarray]:
    """class index -> bool mask [height, width] of the experts' fused markings
    (``fuse`` of the files at ``xml_paths``)."""
    return fuse([read_expert_file(p) for p in xml_paths], class_names, height, width,
                threshold, confidence)


def fuse(experts: Sequence[ExpertFile], class_names: Sequence[str], height: int, width: int,
         threshold: float = DEFAULT_FUSION_THRESHOLD,
         confidence: Optional[Mapping[str, float]] = None) -> Dict[int, np.ndarray]:
    """class index -> bool mask [height, width] of the experts' fused markings.

    Each expert's confidence map is the highest confidence of their markings covering a
    pixel (0 where none does); a pixel is lesion where the mean over the experts is at
    least ``threshold``. A confidence level outside ``confidence`` is a DataError
    naming the file.
    """
    levels = dict(DEFAULT_CONFIDENCE if confidence is None else confidence)
    index_of = {kind: class_names.index(name) for kind, name in MARKING_CLASSES.items()
                if name in class_names}
    total = {index: np.zeros((height, width), np.float32) for index in index_of.values()}
    for expert in experts:
        path, markings = expert.path, expert.markings
        unknown = sorted({m.confidence for m in markings} - set(levels))
        if unknown:
            raise DataError(f"{path}: confidence level(s) {unknown} are not among "
                            f"{sorted(levels)}; set them with the reader's confidence setting")
        for kind, index in index_of.items():
            # Drawing the levels in increasing order leaves each pixel the highest one.
            ordered = sorted((m for m in markings if m.kind == kind),
                             key=lambda m: levels[m.confidence])
            if not ordered:
                continue
            values = sorted({levels[m.confidence] for m in ordered})
            canvas = np.zeros((height, width), np.uint8)
            for marking in ordered:
                _draw(canvas, marking, values.index(levels[marking.confidence]) + 1)
            total[index] += np.array([0.0] + values, np.float32)[canvas]
    count = max(1, len(experts))
    # A small tolerance: 3 x 1.0 / 4 must meet 0.75 despite float rounding.
    return {index: total[index] / count >= threshold - 1e-6 for index in total}


def rasterise(annotation: DrawnAnnotation, class_names: Sequence[str], height: int,
              width: int) -> Dict[int, np.ndarray]:
    """The ``DrawnAnnotation`` of a DIARETDB1 example as class index -> bool mask."""
    settings = dict(annotation.settings)
    return fused_masks(annotation.paths, class_names, height, width,
                       threshold=float(settings.get("threshold", DEFAULT_FUSION_THRESHOLD)),
                       confidence=confidence_table(str(settings["confidence"]))
                       if "confidence" in settings else None)


def _dataset_dir(root: str) -> str:
    """The folder holding ``images/`` (``root`` itself or its ``ddb1_v02_01``)."""
    for base in (root, os.path.join(root, "ddb1_v02_01")):
        if os.path.isdir(os.path.join(base, "images")):
            return base
    raise DataError(f"DIARETDB1: {root!r} holds neither images/ nor ddb1_v02_01/images/")


def split_ids(base: str, split: str) -> Optional[List[str]]:
    """Image ids the official list of ``split`` names (``ddb1_v02_01_<split>*.txt``), in
    their order; None when the folder has no list for it. The lists name image files
    (and, in the non-plain form, each image's expert XML files) separated by spaces."""
    lists = sorted(name for name in os.listdir(base)
                   if name.lower().endswith(".txt") and re.search(rf"(^|_){split}(_|\.)",
                                                                  name.lower()))
    if not lists:
        return None
    ids: List[str] = []
    for name in lists:
        with open(os.path.join(base, name), encoding="utf-8", errors="replace") as handle:
            for token in handle.read().split():
                stem, ext = os.path.splitext(os.path.basename(token))
                if ext.lower() in IMAGE_EXTENSIONS and stem not in ids:
                    ids.append(stem)
    if not ids:
        raise DataError(f"DIARETDB1: split list(s) {lists} in {base!r} name no image file")
    return ids


def expert_files(groundtruth: str) -> Dict[str, List[str]]:
    """image id -> its experts' XML files (``<id>_NN.xml``, sorted)."""
    found: Dict[str, List[str]] = {}
    if not os.path.isdir(groundtruth):
        return found
    for name in sorted(os.listdir(groundtruth)):
        match = re.match(r"^(?P<id>.+)_\d+(_plain)?\.xml$", name, re.IGNORECASE)
        if match and not name.startswith("."):
            found.setdefault(match["id"], []).append(os.path.join(groundtruth, name))
    return found


def _image_size(experts: Sequence[ExpertFile], image_path: str) -> Tuple[int, int]:
    """(height, width) the marking files state, else the image's own."""
    for expert in experts:
        if expert.size:
            return expert.size
    image = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"{image_path}: unreadable image, and its marking files give no size")
    return image.shape[:2]


def load_diaretdb1(root: str, split: Optional[str] = "train",
                   class_names: Optional[Sequence[str]] = None,
                   threshold: float = DEFAULT_FUSION_THRESHOLD,
                   confidence: str = _table_text(DEFAULT_CONFIDENCE),
                   strict: bool = False) -> List[MaskExample]:
    """MaskExamples of DIARETDB1 v2.1, sorted by image id, each drawn from its experts'
    markings at decode time (``fused_masks``).

    ``root`` is the dataset folder (``ddb1_v02_01/``) or its parent. ``split`` (train |
    test) reads the official list (28 / 61 images); ``None`` reads every image.
    ``threshold`` and ``confidence`` (``level=value,...``) set the expert fusion.
    ``image_labels`` mark the lesions the fused masks contain; ``annotated`` flags the
    four DIARETDB1 lesions among ``class_names`` (others are unannotated, not absent).
    Marking types that are not lesion classes here (IRMA, neovascularisation, the disc)
    are counted and logged.
    """
    if split is not None and split not in SPLITS:
        raise ConfigError(f"DIARETDB1 split={split!r}; choose one of {SPLITS} (or None: all)")
    if class_names is None:
        class_names = diaretdb1_class_names()
    if not any(name in class_names for name in MARKING_CLASSES.values()):
        raise ConfigError(f"DIARETDB1: class_names {tuple(class_names)} name none of its "
                          f"lesions {sorted(MARKING_CLASSES.values())}")
    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"DIARETDB1 fusion threshold {threshold}: expected 0 < t <= 1")
    levels = confidence_table(confidence)
    base = _dataset_dir(require_dir(root, "DIARETDB1 root"))
    image_dir = os.path.join(base, "images")
    images = index_files(image_dir, IMAGE_EXTENSIONS)
    experts = expert_files(os.path.join(base, "groundtruth"))
    wanted = sorted(images)
    if split is not None:
        listed = split_ids(base, split)
        if listed is None:
            raise DataError(f"DIARETDB1: no {split} list (ddb1_v02_01_{split}*.txt) in {base!r}; "
                            "read every image with split=None")
        wanted = listed
    log = SkipLog("DIARETDB1", strict)
    for image_id in wanted:
        if image_id not in images:
            log.skip(f"listed in the {split} list but not in {image_dir}", image_id)
    settings = (("threshold", float(threshold)), ("confidence", _table_text(levels)))
    annotated = tuple(int(name in MARKING_CLASSES.values()) for name in class_names[1:])
    left_out: Dict[str, int] = {}
    examples = []
    for image_id in (i for i in wanted if i in images):
        paths = experts.get(image_id, [])
        if not paths:
            log.skip("no expert marking file in groundtruth/", images[image_id])
            continue
        if not usable_file(images[image_id], "image", log):
            continue
        read = [read_expert_file(path) for path in paths]  # each file parsed once
        for expert in read:
            for reason, n in expert.left_out.items():
                left_out[reason] = left_out.get(reason, 0) + n
        height, width = _image_size(read, images[image_id])
        masks = fuse(read, class_names, height, width, float(threshold), levels)
        labels = tuple(int(masks[k].any()) if k in masks else 0
                       for k in range(1, len(class_names)))
        examples.append(MaskExample(
            image_path=images[image_id], image_id=image_id, image_labels=labels,
            annotated=annotated if not all(annotated) else (),
            drawn=DrawnAnnotation(NAME, tuple(paths), settings)))
    if left_out:
        logging.info("DIARETDB1: left out markings that are not lesion classes here: %s",
                     ", ".join(f"{k}: {v}" for k, v in sorted(left_out.items())))
    logging.info("DIARETDB1: experts fused by mean confidence >= %g (levels %s)", threshold,
                 _table_text(levels))
    return log.finish(examples, base)


FORMAT = DatasetFormat(NAME, MASKS, load_diaretdb1, splits={"train": "train", "val": "test"},
                       class_names=diaretdb1_class_names)
