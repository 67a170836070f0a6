"""``DataSource``: the data every row of a suite trains and is validated on."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple

from coopseg.config import ExperimentConfig, use_class_names


@dataclass
class DataSource:
    """The data every row of a suite trains and is validated on (any format of
    ``data_pipelines.datasets``)."""

    graded_format: str
    graded_train: str
    graded_val: str
    masks_format: str
    masks_train: str
    masks_val: str
    description: str = ""
    counts: Optional[dict] = None
    # The mask set's classes (background first) when they are not the fundus lesions
    # of the configs (e.g. VOC's 21); empty = keep each config's own.
    class_names: Tuple[str, ...] = ()

    def apply(self, config: ExperimentConfig) -> None:
        d = config.data
        d.graded_format, d.masks_format = self.graded_format, self.masks_format
        d.graded_train, d.graded_val = self.graded_train, self.graded_val
        d.masks_train, d.masks_val = self.masks_train, self.masks_val
        if self.class_names:
            use_class_names(config, self.class_names)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
