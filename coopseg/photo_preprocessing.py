"""Which photo preprocessing a trained model expects, so prediction repeats it.

A model must see new photos the way it saw its training images. Two steps of that
depend on how the training data was made, not on the model:

- **retina crop** (crop the black camera border, pad to a centred square) and
- **Graham normalisation**

are applied by ``coopseg-convert`` when it writes TFRecords (and recorded in their
``manifest.json``), and by nothing else: the direct folder readers and the synthetic
set feed whole frames, resized. ``from_config`` reads that off a run's config, the
export stores it in ``assets/coopseg.json``, and ``coopseg-predict`` and the
``serving_bytes`` signature apply it. The resize and the per-image standardisation
are always applied.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import List

from absl import logging

from coopseg.config import ExperimentConfig


@dataclass(frozen=True)
class PhotoPreprocessing:
    """Data-dependent preprocessing of photos before the model's resize."""

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
    from data_pipelines.tfrecords import read_manifest
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
    """What the run's training images went through (see the module docstring).

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
