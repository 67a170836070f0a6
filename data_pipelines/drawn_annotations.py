"""Rasterisers of the annotation formats stored as drawings, by format name.

A ``MaskExample`` whose ``drawn`` field is set is turned into masks here, at decode
time, at the photo's own size: DIARETDB1's expert shapes and HEI-MED's blob maps.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from data_pipelines import diaretdb1, heimed
from data_pipelines.records import DataError, DrawnAnnotation

Rasteriser = Callable[[DrawnAnnotation, Sequence[str], int, int], Dict[int, np.ndarray]]
RASTERISERS: Dict[str, Rasteriser] = {
    diaretdb1.NAME: diaretdb1.rasterise,
    heimed.NAME: heimed.rasterise,
}


def draw_masks(annotation: DrawnAnnotation, class_names: Sequence[str], height: int,
               width: int) -> Dict[int, np.ndarray]:
    """class index -> bool mask [height, width] of ``annotation``."""
    if annotation.format not in RASTERISERS:
        raise DataError(f"{annotation.paths[0] if annotation.paths else '?'}: no rasteriser "
                        f"for drawn annotations of format {annotation.format!r}; known: "
                        f"{sorted(RASTERISERS)}")
    return RASTERISERS[annotation.format](annotation, class_names, height, width)
