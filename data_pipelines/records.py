"""The record types every dataset reader produces and every pipeline consumes.

A reader (EyePACS, APTOS, IDRiD, generic mask set, VOC, synthetic) turns an on-disk
layout into a list of these records, checking what can be checked without decoding
pixels; ``data_pipelines.pipeline`` turns records into a ``tf.data.Dataset``. Keeping
the two apart means a new dataset format is one small reader and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union


class DataError(ValueError):
    """Bad input data; the message names the file and the problem."""


@dataclass(frozen=True)
class GradedExample:
    """One image with a DR grade (0-4) for the classifier agent.

    ``patient_id`` groups images that must stay on one side of a train/val split
    (EyePACS ``10_left`` and ``10_right`` are patient ``10``).
    """

    image_path: str
    grade: int
    image_id: str
    patient_id: str = ""


@dataclass(frozen=True)
class DrawnAnnotation:
    """Lesion markings stored as drawings or blob maps rather than mask images
    (DIARETDB1's expert XML shapes, HEI-MED's blob maps), rasterised when the example
    is decoded (``data_pipelines.drawn_annotations``).

    ``format`` names the rasteriser, ``paths`` its input files, ``settings`` its
    options as ``(name, value)`` pairs (e.g. DIARETDB1's expert-fusion rule), so the
    record stays a plain, hashable value.
    """

    format: str
    paths: Tuple[str, ...]
    settings: Tuple[Tuple[str, Union[str, float]], ...] = ()


@dataclass(frozen=True)
class MaskExample:
    """One image with a segmentation annotation for the segmentation agent.

    Exactly one of three annotation forms is used:
    - ``mask_paths``: one binary mask file per foreground class, in the order of
      ``class_names[1:]``; ``""`` means "no lesion of that class" (an empty mask).
      Pixels > 0 are foreground; overlaps collapse by the configured priority.
    - ``label_path``: one class-index map (PNG; 255 = ignore), as in VOC or the
      generic ``labels/`` layout.
    - ``drawn``: markings rasterised at decode time (``DrawnAnnotation``).
    ``image_labels`` is the multi-hot image-level label over foreground classes
    (DecoupledNet's weak labels); empty when the reader does not know it.
    """

    image_path: str
    image_id: str
    mask_paths: Tuple[str, ...] = ()
    label_path: str = ""
    image_labels: Tuple[int, ...] = ()
    grade: int = -1
    # Which foreground classes (1/0 per class of ``class_names[1:]``) the image's set
    # annotates; empty = all. An unmarked pixel of a partially annotated image is
    # "background or an unannotated class" (``config.partial_label``), never "absent".
    annotated: Tuple[int, ...] = ()
    drawn: Union[DrawnAnnotation, None] = None

    @property
    def is_partial(self) -> bool:
        """Whether the image's set leaves some foreground class unannotated."""
        return bool(self.annotated) and not all(self.annotated)
