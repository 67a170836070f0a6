"""``DatasetFormat``: how a reader declares itself, once: its format name (the same in
every CLI), the kind of set it reads, its reader, its named splits, its classes and
whether its photos are fundus photos (cropped to the retina by the converter)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Tuple

from coopseg.config import LESION_CLASSES

GRADED, MASKS = "graded", "masks"


@dataclass(frozen=True)
class DatasetFormat:
    """One on-disk format. ``splits`` maps a data role (train | val) to the reader's
    split for formats whose layout names its splits (IDRiD's test set, VOC's val);
    ``class_names`` gives a mask format's own classes (default: the fundus lesions)."""

    name: str
    kind: str  # GRADED or MASKS
    load: Callable[..., list]
    splits: Mapping[str, str] = field(default_factory=dict)
    class_names: Optional[Callable[[], Tuple[str, ...]]] = None
    fundus: bool = True  # False: ordinary photos (VOC), never cropped to a retina
    # A run reading this format takes its classes unless it names others (VOC's 21:
    # its label maps index them); else the run's classes (the fundus lesions) stand.
    classes_by_default: bool = False

    def default_class_names(self) -> Tuple[str, ...]:
        """The classes a mask set of this format has unless the run names others."""
        return self.class_names() if self.class_names else LESION_CLASSES
