"""Which photo preprocessing a trained model expects, and whether a photo is gradable.

A model must see new photos the way it saw its training images: ``from_config`` reads
the retina crop and Graham normalisation off a run's config, the export records them,
and ``coopseg-predict`` and ``serving_bytes`` repeat them. ``assess_gradability`` flags
the photos a grader could not judge.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np
from absl import logging

from coopseg.config import ExperimentConfig
from data_pipelines import fundus
from data_pipelines.tfrecords import read_manifest


@dataclass(frozen=True)
class PhotoPreprocessing:
    """Data-dependent preprocessing of photos before the model's resize.

    The retina crop (crop the black camera border, pad to a centred square) and Graham
    normalisation depend on how the training data was made, not on the model; the
    resize and the per-image standardisation are always applied.
    """

    crop_retina: bool = False
    retina_threshold: int = 10
    graham: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PhotoPreprocessing":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def describe(self) -> str:
        steps = ([f"retina crop (threshold {self.retina_threshold})"] if self.crop_retina else [])
        steps += ["Graham normalisation"] if self.graham else []
        return ", ".join(steps) or "whole frame (no retina crop, no Graham)"


def _converted_options(config: ExperimentConfig) -> List[dict]:
    """The converter options of the run's TFRecord training sets (none for folders)."""
    d = config.data
    found = []
    for fmt, root in ((d.graded_format, d.graded_train), (d.masks_format, d.masks_train)):
        if fmt != "tfrecord" or not root:
            continue
        if not os.path.isdir(root):
            logging.warning("Cannot read the preprocessing of %s (not found): assuming the "
                            "converter's defaults for a fundus set", root)
            found.append({"crop_retina": True})
            continue
        split = read_manifest(root).get("splits", {}).get("train", {})
        found.append(split.get("options", {}))
    return found


def from_config(config: ExperimentConfig) -> PhotoPreprocessing:
    """What the run's training images went through.

    The retina crop and Graham normalisation are applied by ``coopseg-convert`` when it
    writes TFRecords (and recorded in their ``manifest.json``), and by nothing else: the
    direct folder readers and the synthetic set feed whole frames, resized.

    With two converted sets (graded and masks) that were converted differently, the
    graded set's options win and a warning says so: the classifier is the head a
    grading service is judged by.
    """
    options = _converted_options(config)
    if not options:
        return PhotoPreprocessing()
    chosen = [PhotoPreprocessing(crop_retina=bool(o.get("crop_retina", True)),
                                 retina_threshold=int(o.get("retina_threshold", 10)),
                                 graham=bool(o.get("graham", False))) for o in options]
    if len(set(chosen)) > 1:
        logging.warning("The graded and mask training sets were converted differently (%s vs "
                        "%s); prediction uses the graded set's", chosen[0].describe(),
                        chosen[1].describe())
    return chosen[0]


# ---------------------------------------------------------------------- gradability

# Mean luminance (OpenCV's 0..255 grey) inside the retina below which a photo is too
# dark. Fine DR lesions (microaneurysms, dot haemorrhages) and fine vessels are of the
# order of 10 % darker than the retina around them; at a mean of 20 that is 2 grey
# levels, about the least that survives 8-bit quantisation and JPEG noise (~1 level).
# Below it they merge with their surround, and brightening the photo (as a grader
# would, or as the model's per-image standardisation does) only magnifies quantisation
# noise. Normally exposed photos are far above it (synthetic discs: 70-90).
MIN_MEAN_LUMINANCE = 20.0

# A retina pixel whose green channel is at least this is clipped: green carries the
# vessel and lesion contrast graders read (the red-free view), and a channel at the
# sensor's ceiling (JPEG ringing keeps it a few levels below 255) has none left.
CLIPPED_GREEN_LEVEL = 250
# More than this fraction of the retina clipped: too bright. The optic disc and large
# exudates may clip in a good photo, but they cover a few percent; past half the
# retina, most of the area a grader must read shows nothing.
MAX_CLIPPED_FRACTION = 0.5

# The retina disc (the photo, if none was found) must be at least this many times the
# model's input size across (the larger side of its box: the side the retina crop
# resizes to the input). Below 1 the resize upsamples it, so the model sees
# interpolated blur where its training images (shrunk from larger photos, or drawn at
# the input size) always had detail, and a lesion a few model pixels wide rests on
# fewer photo pixels than it covers.
MIN_RETINA_SIDE_PER_INPUT = 1.0

# The retina is measured on a strided copy of at most about this many pixels a side:
# a mean or a fraction over tens of thousands of pixels is as good as over millions,
# and the measurement stays well under a millisecond per photo.
_MEASURE_SIDE = 256
# ... and within this fraction of the disc's radius: the detector's box may hold a
# pixel or a sampling step of black border around the disc, which would otherwise
# darken the mean of a small or large photo by a few percent.
_MEASURE_RADIUS_FRACTION = 0.95


@dataclass(frozen=True)
class RetinaMeasure:
    """What ``measure_retina`` found in one photo (the whole frame if no retina)."""

    retina_found: bool
    side: int  # pixels across: the larger side of the retina's box (or of the photo)
    mean_luminance: float  # 0..255, inside the retina disc (or the whole photo)
    clipped_fraction: float  # of retina pixels with the green channel at the ceiling


@dataclass(frozen=True)
class Gradability:
    """Whether the model's answer for a photo can be trusted, and why not.

    The model answers for every photo, also for a black frame or an underexposed eye,
    so ``coopseg-predict`` measures each photo before the model runs (``measure_retina``:
    is there a retina disc, how bright, how many pixels across) and flags the ones a
    grader could not judge. The flag never replaces the prediction: the user sees both.
    """

    gradable: bool
    reasons: Tuple[str, ...]
    measure: RetinaMeasure

    @property
    def reason(self) -> str:
        """The reasons joined for one CSV cell ("" when gradable)."""
        return "; ".join(self.reasons)


def measure_retina(image: np.ndarray, box: Optional[fundus.Box]) -> RetinaMeasure:
    """Size, brightness and clipping of the retina in RGB uint8 ``image`` ``[H, W, 3]``.

    ``box`` is ``fundus.crop_box_to_retina``'s answer for the image (None: no retina,
    the whole photo is measured). Brightness and clipping are taken inside the ellipse
    inscribed in the box, shrunk to 95 %: that is the disc when the box holds a whole
    disc, and lies inside it when the frame cuts the disc off at top and bottom, so the
    black camera border does not count as a dark retina.
    """
    height, width = image.shape[:2]
    y0, y1, x0, x1 = box if box is not None else (0, height, 0, width)
    step = max(1, max(height, width) // _MEASURE_SIDE)
    region = image[y0:y1:step, x0:x1:step]
    if step > 1:  # OpenCV takes a row-strided view as it is, but not strided columns
        region = np.ascontiguousarray(region)
    h, w = region.shape[:2]
    # OpenCV's masked mean and counts: ~5x faster than numpy boolean indexing, and this
    # runs on every photo.
    gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    clipped = cv2.compare(cv2.extractChannel(region, 1), CLIPPED_GREEN_LEVEL, cv2.CMP_GE)
    if box is None:
        inside = np.full((h, w), 255, np.uint8)
    else:
        # Pixel centres within the (shrunk) inscribed ellipse; the centre pixel always
        # is, so a box of one pixel is still measured.
        ys = (np.arange(h, dtype=np.float32) + 0.5 - h / 2) / (h / 2 * _MEASURE_RADIUS_FRACTION)
        xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2 * _MEASURE_RADIUS_FRACTION)
        inside = ((ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0) * 255).astype(np.uint8)
    pixels = cv2.countNonZero(inside)
    return RetinaMeasure(retina_found=box is not None, side=max(y1 - y0, x1 - x0),
                         mean_luminance=float(cv2.mean(gray, inside)[0]),
                         clipped_fraction=cv2.countNonZero(clipped & inside) / pixels)


def gradability_reasons(measure: RetinaMeasure, input_size: int) -> Tuple[str, ...]:
    """Why a photo measured as ``measure`` cannot be judged by a model with
    ``input_size`` px inputs; empty when it can (thresholds: the module constants)."""
    where = "retina" if measure.retina_found else "photo"
    reasons = [] if measure.retina_found else ["no retina found"]
    # Values are rounded away from the threshold, so the text never reads "20.0 < 20".
    if measure.mean_luminance < MIN_MEAN_LUMINANCE:
        mean = math.floor(measure.mean_luminance * 10) / 10
        reasons.append(f"too dark: {where} mean brightness {mean:.1f} < {MIN_MEAN_LUMINANCE:g}")
    if measure.clipped_fraction > MAX_CLIPPED_FRACTION:
        percent = math.ceil(measure.clipped_fraction * 100)
        reasons.append(f"too bright: {percent}% of the {where} clipped "
                       f"> {MAX_CLIPPED_FRACTION:.0%}")
    min_side = MIN_RETINA_SIDE_PER_INPUT * input_size
    if measure.side < min_side:
        reasons.append(f"too small: {where} {measure.side} px across < {min_side:g} px")
    return tuple(reasons)


def assess_gradability(image: np.ndarray, box: Optional[fundus.Box],
                       input_size: int) -> Gradability:
    """``measure_retina`` then ``gradability_reasons``: RGB uint8 ``image`` with its
    retina ``box`` (``fundus.crop_box_to_retina``, None if none) for a model with
    ``input_size`` px inputs."""
    measure = measure_retina(image, box)
    reasons = gradability_reasons(measure, input_size)
    return Gradability(not reasons, reasons, measure)
