"""HEI-MED reader: exudate blob maps turned into an exudate mask.

HEI-MED (Giancardo et al., Medical Image Analysis 2012, doi:10.1016/j.media.2011.07.004):
169 JPEG photos, each with a blob map (``.map.gz``: gzip of a 12-byte header and one
int32 blob id per pixel) and a ``.GND`` file of each blob's type. Only exudates are
annotated: the set is partial.
"""
from __future__ import annotations

import gzip
import os
import re
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import logging

from coopseg.config import ConfigError
from data_pipelines.idrid import idrid_class_names
from data_pipelines.dataset_format import MASKS, DatasetFormat
from data_pipelines.readers_common import SkipLog, index_files, require_dir, usable_file
from data_pipelines.records import DataError, DrawnAnnotation, MaskExample

NAME = "heimed"
HEADER_BYTES = 12
# HEI-MED does not tell hard from soft exudates; its exudates are the lipid deposits of
# macular oedema, i.e. hard exudates, so that is the default class (a reader setting).
DEFAULT_EXUDATE_CLASS = "hard_exudate"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif")
PIXEL_ORDERS = ("auto", "row", "column")


def parse_gnd(path: str) -> Dict[int, str]:
    """blob id -> type (lower-cased) from a ``.GND`` file.

    Two forms are read: ``<id> <type>`` per line, or one type per line for blobs
    1, 2, ... in order. Anything else is a DataError naming the file and line.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = [(n, line.strip()) for n, line in enumerate(handle, 1) if line.strip()]
    except OSError as err:
        raise DataError(f"{path}: unreadable HEI-MED ground-truth file ({err})") from err
    numbered = [re.match(r"^(\d+)[\s,;:]+(.+)$", text) for _, text in lines]
    if all(numbered):
        types: Dict[int, str] = {}
        for (line, _), match in zip(lines, numbered):
            blob = int(match[1])
            if blob in types:
                raise DataError(f"{path}:{line}: blob {blob} is listed twice")
            types[blob] = match[2].strip().lower()
        return types
    if any(numbered):
        line = next(n for (n, _), m in zip(lines, numbered) if not m)
        raise DataError(f"{path}:{line}: mixes '<blob id> <type>' lines with plain ones")
    return {k: text.lower() for k, (_, text) in enumerate(lines, 1)}


def is_exudate(kind: str) -> bool:
    """Whether a ``.GND`` blob type (lower-cased) names an exudate."""
    return "exudate" in kind


def exudate_blobs(types: Dict[int, str]) -> List[int]:
    """The blob ids whose type names an exudate."""
    return sorted(blob for blob, kind in types.items() if is_exudate(kind))


def _coherence(ids: np.ndarray) -> float:
    """Share of blob pixels whose neighbour below, and whose neighbour to the right,
    has the same id (the lower of the two): near 1 for a map read in its true pixel
    order; read in the transposed order, blobs turn into one-pixel-wide streaks."""
    shares = []
    for here, there in ((ids[:-1], ids[1:]), (ids[:, :-1], ids[:, 1:])):
        inside = here > 0
        shares.append(float((here[inside] == there[inside]).mean()) if inside.any() else 1.0)
    return min(shares)


def read_blob_map(path: str, height: int, width: int, pixel_order: str = "auto") -> np.ndarray:
    """int32 blob ids [height, width] of a ``.map.gz`` file.

    The payload after the 12-byte header must hold one int32 per pixel of the photo;
    little- or big-endian is told by which gives non-negative ids below 2^24. Its pixel
    order (``row`` or ``column`` major) is told, with ``auto``, by which order makes
    blobs contiguous; a map that is coherent in neither order is a DataError.
    """
    if pixel_order not in PIXEL_ORDERS:
        raise ConfigError(f"HEI-MED pixel_order={pixel_order!r}; choose one of {PIXEL_ORDERS}")
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable gzip blob map ({err})") from err
    payload = len(data) - HEADER_BYTES
    if payload != 4 * height * width:
        raise DataError(f"{path}: {payload} payload bytes after the {HEADER_BYTES}-byte header, "
                        f"but the photo is {width}x{height} = {4 * height * width} bytes of "
                        "int32 blob ids")
    ids = None
    for dtype in ("<i4", ">i4"):
        candidate = np.frombuffer(data, dtype, offset=HEADER_BYTES)
        if candidate.size and 0 <= candidate.min() and candidate.max() < 2 ** 24:
            ids = candidate
            break
    if ids is None:
        raise DataError(f"{path}: blob ids are not small non-negative int32s in either byte "
                        "order")
    by_row = ids.reshape(height, width)
    by_column = ids.reshape(width, height).T
    if pixel_order == "row":
        return by_row
    if pixel_order == "column":
        return by_column
    if not by_row.any():
        return by_row
    row, column = _coherence(by_row), _coherence(by_column)
    if max(row, column) < 0.2:
        raise DataError(f"{path}: blobs are not contiguous in row or column pixel order "
                        f"(coherence {row:.2f} / {column:.2f}); the map does not fit its photo")
    if abs(row - column) < 0.1:
        logging.warning("%s: pixel order unclear (blob coherence %.2f row-major, %.2f "
                        "column-major); read row-major. Set pixel_order to choose", path, row,
                        column)
    return by_row if row >= column else by_column


def rasterise(annotation: DrawnAnnotation, class_names: Sequence[str], height: int,
              width: int) -> Dict[int, np.ndarray]:
    """The ``DrawnAnnotation`` of a HEI-MED example as class index -> bool mask."""
    map_path, gnd_path = annotation.paths
    settings = dict(annotation.settings)
    exudate_class = str(settings.get("exudate_class", DEFAULT_EXUDATE_CLASS))
    ids = read_blob_map(map_path, height, width, str(settings.get("pixel_order", "auto")))
    blobs = exudate_blobs(parse_gnd(gnd_path))
    return {class_names.index(exudate_class): np.isin(ids, blobs)}


def _companion(names: Sequence[str], base: str, image_id: str, suffix: str) -> Optional[str]:
    """The file of ``image_id`` ending in ``suffix`` (``<id>.map.gz`` or
    ``<id>.jpg.map.gz``, any case)."""
    prefix = image_id.lower() + "."
    for name in names:
        if name.lower().startswith(prefix) and name.lower().endswith(suffix):
            return os.path.join(base, name)
    return None


def load_heimed(root: str, class_names: Optional[Sequence[str]] = None,
                exudate_class: str = DEFAULT_EXUDATE_CLASS, pixel_order: str = "auto",
                strict: bool = False) -> List[MaskExample]:
    """MaskExamples of HEI-MED, sorted by image id; the exudate mask is drawn from the
    blob map at decode time.

    ``root`` is the ``DMED`` folder (or its parent). Blobs whose ``.GND`` type names an
    exudate become ``exudate_class``; other blob types are counted and logged. Every
    class but ``exudate_class`` is unannotated (``annotated``), so it is never taught
    as absent. ``image_labels`` flag images with an exudate blob. HEI-MED has no
    official split.
    """
    class_names = tuple(class_names or idrid_class_names())
    if exudate_class not in class_names[1:]:
        raise ConfigError(f"HEI-MED exudate_class={exudate_class!r} is not among the "
                          f"foreground classes {class_names[1:]}")
    if pixel_order not in PIXEL_ORDERS:
        raise ConfigError(f"HEI-MED pixel_order={pixel_order!r}; choose one of {PIXEL_ORDERS}")
    root = require_dir(root, "HEI-MED root")
    base = os.path.join(root, "DMED") if os.path.isdir(os.path.join(root, "DMED")) else root
    images = index_files(base, IMAGE_EXTENSIONS)
    names = sorted(n for n in os.listdir(base) if not n.startswith("."))
    log = SkipLog("HEI-MED", strict)
    settings = (("exudate_class", exudate_class), ("pixel_order", pixel_order))
    annotated = tuple(int(name == exudate_class) for name in class_names[1:])
    index = class_names.index(exudate_class)
    other_types: Dict[str, int] = {}
    examples = []
    for image_id, image_path in sorted(images.items()):
        map_path = _companion(names, base, image_id, ".map.gz")
        gnd_path = _companion(names, base, image_id, ".gnd")
        if map_path is None or gnd_path is None:
            missing = " and ".join(w for w, p in ((".map.gz", map_path), (".GND", gnd_path))
                                   if p is None)
            log.skip(f"no {missing} file beside the photo", image_path)
            continue
        if not (usable_file(image_path, "image", log) and usable_file(map_path, "blob map", log)):
            continue
        types = parse_gnd(gnd_path)
        for kind in types.values():
            if not is_exudate(kind):
                other_types[kind] = other_types.get(kind, 0) + 1
        labels = tuple(int(k == index and bool(exudate_blobs(types)))
                       for k in range(1, len(class_names)))
        examples.append(MaskExample(
            image_path=image_path, image_id=image_id, image_labels=labels,
            annotated=annotated if not all(annotated) else (),
            drawn=DrawnAnnotation(NAME, (map_path, gnd_path), settings)))
    if other_types:
        logging.info("HEI-MED: blobs of types that are not exudates, left as unmarked: %s",
                     ", ".join(f"{k}: {v}" for k, v in sorted(other_types.items())))
    return log.finish(examples, base)


FORMAT = DatasetFormat(NAME, MASKS, load_heimed, class_names=idrid_class_names)
