"""PASCAL VOC 2012 segmentation reader, for DecoupledNet (``load_voc``).

The devkit's layout: ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg``, palette PNG label maps
``SegmentationClass/<id>.png`` (index = class, 255 = ignore) and split files
``ImageSets/Segmentation/{train,val,trainval}.txt``. DecoupledNet's image-level labels
are derived from the label maps (``voc_image_labels``).
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from coopseg.config import IGNORE_LABEL, ConfigError
from data_pipelines import imageio
from data_pipelines.readers_common import SkipLog, require_dir, usable_file
from data_pipelines.dataset_format import MASKS, DatasetFormat
from data_pipelines.records import DataError, MaskExample

VOC_CLASSES: Tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


def voc_colormap(size: int = 256) -> np.ndarray:
    """The devkit's colormap (``VOClabelcolormap.m``), RGB uint8 of shape (size, 3).

    Bits 0/1/2 of the index go to the top bits of R/G/B, bits 3/4/5 to the next, and so
    on; so class 1 is (128, 0, 0) and the ignore index 255 is (224, 224, 192).
    """
    cmap = np.zeros((size, 3), np.uint8)
    for index in range(size):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        cmap[index] = (r, g, b)
    return cmap


def read_voc_label(path: str) -> np.ndarray:
    """Class indices (uint8, H x W; 255 = ignore) of a VOC-style label PNG.

    Grey index PNGs (with or without alpha, e.g. SegmentationClassAug) are read as they
    are; colour PNGs map back to indices through their own palette (PLTE chunk,
    ``imageio.png_palette``) or, without one, the VOC colormap. The class indices live
    in the PNG's palette indices, which OpenCV cannot return: it expands palette PNGs to
    BGR (checked with OpenCV 4.11), and PIL is not a dependency.
    """
    data = imageio.read_bytes(path)
    image = imageio.decode_unchanged(path, data)
    if image.dtype != np.uint8:
        raise DataError(f"{path}: expected an 8-bit label map, got {image.dtype}")
    if image.ndim == 2 or image.shape[-1] == 2:  # grey indices (with alpha)
        return np.ascontiguousarray(image if image.ndim == 2 else image[..., 0])
    if not imageio.is_png(data):
        raise DataError(f"{path} is not a PNG file")
    palette = imageio.png_palette(data)
    rgb = image[..., 2::-1]  # BGR(A) -> RGB
    return imageio.colours_to_indices(path, rgb, voc_colormap() if palette is None else palette)


def voc_image_labels(label_png_path: str, num_classes: int = len(VOC_CLASSES)) -> Tuple[int, ...]:
    """Multi-hot over the foreground classes 1..num_classes-1 present in a label map.

    DecoupledNet's weak (image-level) labels. Indices other than classes and 255 are a
    data bug: DataError naming the file and the values.
    """
    present = np.unique(read_voc_label(label_png_path))
    bad = [int(v) for v in present if v >= num_classes and v != IGNORE_LABEL]
    if bad:
        raise DataError(f"{label_png_path}: class indices {bad} outside 0..{num_classes - 1} "
                        f"and {IGNORE_LABEL} (ignore)")
    return tuple(int(c in present) for c in range(1, num_classes))


def _root_and_split(path: str, split: str) -> Tuple[str, str]:
    """(VOC root, split) of ``path``: a root as given, or a split file's root and name."""
    if not path.endswith(".txt"):
        return path, split
    segmentation = os.path.dirname(os.path.abspath(path))
    image_sets = os.path.dirname(segmentation)
    if (os.path.basename(segmentation), os.path.basename(image_sets)) != ("Segmentation",
                                                                          "ImageSets"):
        raise DataError(f"{path}: a VOC split file must be <VOC2012>/ImageSets/Segmentation/"
                        "<split>.txt")
    return os.path.dirname(image_sets), os.path.basename(path)[:-4]


def _voc_root(root: str) -> str:
    nested = os.path.join(root, "VOC2012")
    return nested if os.path.isdir(nested) else root


def _split_ids(root: str, split: str) -> List[str]:
    folder = require_dir(os.path.join(root, "ImageSets", "Segmentation"), "VOC split folder")
    path = os.path.join(folder, f"{split}.txt")
    if not os.path.isfile(path):
        available = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".txt"))
        raise DataError(f"VOC split file {path!r} does not exist; available splits {available}")
    with open(path, encoding="utf-8") as handle:
        listed = [line.strip() for line in handle if line.strip()]
    ids = sorted(set(listed))
    if len(ids) < len(listed):
        logging.warning("%s: %d repeated id(s) ignored", path, len(listed) - len(ids))
    return ids


def load_voc(root: str, split: str = "train", with_image_labels: bool = True,
             class_names: Optional[Sequence[str]] = None, label_dir: str = "SegmentationClass",
             strict: bool = False) -> List[MaskExample]:
    """MaskExamples (``label_path`` form) of a VOC 2012 split, sorted by image id.

    ``root`` is ``VOCdevkit/VOC2012`` or ``VOCdevkit``, or a split file
    ``.../ImageSets/Segmentation/<split>.txt``, which selects that split: a data path
    such as ``data.masks_val`` can thus name the val split. ``with_image_labels`` decodes
    every label map (about 3k for train+val: seconds) to fill ``image_labels`` over the
    20 foreground classes. ``class_names``, when given, must have VOC's 21 entries (the
    indices are fixed by the files). ``label_dir`` selects e.g. ``SegmentationClassAug``.
    ``strict`` raises instead of skipping ids whose image or label is missing or empty.
    """
    if class_names is not None:
        if len(class_names) != len(VOC_CLASSES):
            raise ConfigError(f"VOC labels have {len(VOC_CLASSES)} classes {VOC_CLASSES}; "
                              f"class_names has {len(class_names)}")
        if tuple(class_names) != VOC_CLASSES:
            logging.warning("VOC: class_names %s differ from VOC_CLASSES %s; indices follow the "
                            "files", tuple(class_names), VOC_CLASSES)
    root, split = _root_and_split(root, split)
    root = _voc_root(require_dir(root, "VOC root"))
    images = require_dir(os.path.join(root, "JPEGImages"), "VOC image folder")
    labels = require_dir(os.path.join(root, label_dir), "VOC label folder")
    log = SkipLog(f"VOC {split}", strict)
    examples = []
    for image_id in _split_ids(root, split):
        image_path = os.path.join(images, f"{image_id}.jpg")
        label_path = os.path.join(labels, f"{image_id}.png")
        missing = [p for p in (image_path, label_path) if not os.path.isfile(p)]
        if missing:
            log.skip("file listed in the split is missing", missing[0])
        elif usable_file(image_path, "image", log) and usable_file(label_path, "label map", log):
            examples.append(MaskExample(
                image_path=image_path, image_id=image_id, label_path=label_path,
                image_labels=voc_image_labels(label_path) if with_image_labels else ()))
    return log.finish(examples, f"{root} split {split!r}")


FORMAT = DatasetFormat("voc", MASKS, load_voc, splits={"train": "train", "val": "val"},
                       class_names=lambda: VOC_CLASSES, fundus=False,
                       classes_by_default=True)
