"""Sharded TFRecords written by ``coopseg-convert`` and the tf.data sources reading them.

Files: ``<root>/<split>-<shard:05d>-of-<num_shards:05d>.tfrecord`` plus
``<root>/manifest.json`` (counts, class names, class pixel frequencies, grade histogram,
options, skipped files; see ``data_pipelines/conversion.py``). The schema of one
``tf.train.Example`` is fixed (``_FEATURES``): ``data_pipelines.pipeline`` relies on it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from coopseg.utils.atomic_write import write_json_atomically
from data_pipelines.records import DataError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_PARTIAL_SUFFIX = ".partial"

# The schema of one tf.train.Example:
#   image/id        bytes    record id (EyePACS ``10_left``, IDRiD ``IDRiD_01``, ...)
#   image/encoded   bytes    PNG or JPEG of the RGB uint8 image (OpenCV encoder)
#   image/format    bytes    b"png" or b"jpeg"
#   image/grade     int64    DR grade 0-4, -1 when unknown
#   mask/encoded    bytes    PNG of the uint8 class-index map (255 = ignore); b"" when
#                            the record has no mask
#   image/labels    int64[]  multi-hot over foreground classes (may be empty)
#   image/height    int64    image height in pixels
#   image/width     int64    image width in pixels
_FEATURES = {
    "image/id": tf.io.FixedLenFeature([], tf.string),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/grade": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    "mask/encoded": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "image/labels": tf.io.VarLenFeature(tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
}


@dataclass(frozen=True)
class EncodedRecord:
    """One converted example, its pixels already encoded (the schema: ``_FEATURES``)."""

    image_id: str
    image_encoded: bytes
    image_format: str  # "png" | "jpeg"
    height: int
    width: int
    grade: int = -1
    mask_encoded: bytes = b""
    labels: Sequence[int] = ()


# --- writing ------------------------------------------------------------------------

def encode_image(image: np.ndarray, encoding: str = "png", jpeg_quality: int = 95) -> bytes:
    """PNG or JPEG bytes of an RGB ``[H, W, 3]`` image or a ``[H, W]`` mask (OpenCV).

    Masks must use PNG: it is lossless, so class indices and 255 survive exactly.
    """
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if encoding == "png":
        ok, buffer = cv2.imencode(".png", pixels)
    elif encoding == "jpeg":
        ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise ValueError(f"encoding must be 'png' or 'jpeg', got {encoding!r}")
    if not ok:
        raise DataError(f"OpenCV could not encode a {pixels.shape} {pixels.dtype} array "
                        f"as {encoding}")
    return buffer.tobytes()


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def serialize_record(record: EncodedRecord) -> bytes:
    """The serialized ``tf.train.Example`` of one record."""
    feature = {
        "image/id": _bytes(record.image_id.encode("utf-8")),
        "image/encoded": _bytes(record.image_encoded),
        "image/format": _bytes(record.image_format.encode("ascii")),
        "image/grade": _ints([record.grade]),
        "mask/encoded": _bytes(record.mask_encoded),
        "image/labels": _ints(record.labels),
        "image/height": _ints([record.height]),
        "image/width": _ints([record.width]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
    """``<out_dir>/<split>-<shard:05d>-of-<num_shards:05d>.tfrecord``."""
    return os.path.join(out_dir, f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord")


def write_shard(records: Iterable[EncodedRecord], path: str) -> int:
    """Write one shard atomically (temp file, then rename); returns the record count.

    A crash leaves only a ``.partial`` file, so a shard with its final name is complete
    (the converter's resume relies on this).
    """
    partial = path + _PARTIAL_SUFFIX
    count = 0
    with tf.io.TFRecordWriter(partial) as writer:
        for record in records:
            writer.write(serialize_record(record))
            count += 1
    os.replace(partial, path)
    return count


def write_shards(records: Iterable[EncodedRecord], out_dir: str, split: str,
                 num_shards: int) -> List[str]:
    """Write records round-robin into ``num_shards`` shards (record i -> shard i % n).

    Streams: every shard is open at once under a temp name and renamed at the end.
    Pass records in a fixed order (e.g. sorted by id) to get reproducible shards.
    """
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    os.makedirs(out_dir, exist_ok=True)
    paths = [shard_path(out_dir, split, k, num_shards) for k in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p + _PARTIAL_SUFFIX) for p in paths]
    try:
        for index, record in enumerate(records):
            writers[index % num_shards].write(serialize_record(record))
    finally:
        for writer in writers:
            writer.close()
    for path in paths:
        os.replace(path + _PARTIAL_SUFFIX, path)
    return paths


# --- finding and parsing ---------------------------------------------------------------

def tfrecord_files(root: str, split: str) -> List[str]:
    """The complete, sorted shard list of ``split`` under ``root``.

    Raises DataError naming root and split when there are no shards, when shards of
    different conversions (different ``-of-N``) are mixed, or when some are missing.
    """
    pattern = re.compile(re.escape(split) + r"-(\d{5})-of-(\d{5})\.tfrecord$")
    found = {}
    names = os.listdir(root) if os.path.isdir(root) else []
    for name in names:
        match = pattern.match(name)
        if match:
            found.setdefault(int(match.group(2)), set()).add(int(match.group(1)))
    if not found:
        raise DataError(f"no TFRecord shards for split {split!r} in {root} "
                        f"(expected files named {split}-00000-of-NNNNN.tfrecord)")
    if len(found) > 1:
        raise DataError(f"{root}: split {split!r} mixes shard sets of different sizes "
                        f"{sorted(found)}; convert again with --overwrite")
    (num_shards, present), = found.items()
    missing = sorted(set(range(num_shards)) - present)
    if missing:
        names = ", ".join(os.path.basename(shard_path(root, split, k, num_shards))
                          for k in missing[:5])
        raise DataError(f"{root}: split {split!r} is missing {len(missing)} of {num_shards} "
                        f"shards ({names}{', ...' if len(missing) > 5 else ''}); "
                        f"re-run coopseg-convert to finish it")
    return [shard_path(root, split, k, num_shards) for k in range(num_shards)]


def parse_example(serialized: tf.Tensor) -> dict:
    """Parse one serialized Example into a dict of tensors keyed as in the schema.

    ``image/labels`` comes back dense ``int64 [num_labels]``; the pixels stay encoded.
    """
    parsed = tf.io.parse_single_example(serialized, _FEATURES)
    parsed["image/labels"] = tf.sparse.to_dense(parsed["image/labels"])
    return parsed


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """RGB ``uint8 [H, W, 3]`` from PNG or JPEG bytes."""
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_mask(encoded: tf.Tensor) -> tf.Tensor:
    """Class-index map ``uint8 [H, W]`` from PNG bytes (lossless, 255 = ignore kept)."""
    return tf.io.decode_png(encoded, channels=1, dtype=tf.uint8)[:, :, 0]


# --- tf.data sources ------------------------------------------------------------------

def _parsed_records(files: List[str], cycle_length: Optional[int], deterministic: bool,
                    shuffle_files: bool, seed: Optional[int]) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # A fixed default cycle length (not AUTOTUNE) keeps the element order the same on
    # machines with different core counts when ``deterministic`` is on.
    dataset = dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=cycle_length or min(4, len(files)),
        block_length=1, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    return dataset.map(parse_example, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)


def _has_grade(parsed: dict) -> tf.Tensor:
    return parsed["image/grade"] >= 0


def _has_mask(parsed: dict) -> tf.Tensor:
    return tf.strings.length(parsed["mask/encoded"]) > 0


def _require_some(root: str, split: str, files: List[str], count_key: str,
                  has: Callable[[dict], tf.Tensor], what: str) -> None:
    """DataError when no record of the split has ``what`` (a grade, a mask).

    Trusts the manifest's ``count_key`` when the manifest lists the split; otherwise
    looks at the first record.
    """
    manifest_path = os.path.join(root, MANIFEST_NAME)
    entry = None
    if os.path.exists(manifest_path):
        entry = read_manifest(root).get("splits", {}).get(split)
    if entry is not None:
        if not entry.get(count_key, 0):
            raise DataError(f"{root}: split {split!r} has no records with {what} "
                            f"({manifest_path} counts {count_key}=0)")
        return
    for serialized in tf.data.TFRecordDataset(files).take(1):
        parsed = parse_example(serialized)
        if not bool(has(parsed)):
            raise DataError(f"{root}: split {split!r} records have no {what} (first record "
                            f"{parsed['image/id'].numpy().decode()!r})")


def graded_source_from_tfrecords(root: str, split: str = "train",
                                 cycle_length: Optional[int] = None, deterministic: bool = True,
                                 shuffle_files: bool = False,
                                 seed: Optional[int] = None) -> tf.data.Dataset:
    """``(image uint8 [H, W, 3], grade int32 [])`` from the shards of ``split``.

    Records without a grade (-1) are dropped. Raises DataError when the split has no
    shards or no graded record.
    """
    files = tfrecord_files(root, split)
    _require_some(root, split, files, "with_grade", _has_grade, "a grade")
    dataset = _parsed_records(files, cycle_length, deterministic, shuffle_files, seed)
    dataset = dataset.filter(_has_grade)
    return dataset.map(
        lambda r: (decode_image(r["image/encoded"]), tf.cast(r["image/grade"], tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def mask_source_from_tfrecords(root: str, split: str = "train",
                               cycle_length: Optional[int] = None, deterministic: bool = True,
                               shuffle_files: bool = False, seed: Optional[int] = None,
                               class_names: Optional[Sequence[str]] = None) -> tf.data.Dataset:
    """``(image uint8 [H, W, 3], mask uint8 [H, W])`` from the shards of ``split``.

    Records without a mask are dropped. Raises DataError when the split has no shards
    or no record with a mask, or when ``class_names`` is given and differs from the
    manifest's (mask indices would mean other classes).
    """
    files = tfrecord_files(root, split)
    if class_names is not None and os.path.exists(os.path.join(root, MANIFEST_NAME)):
        stored = read_manifest(root).get("class_names")
        if stored and list(stored) != list(class_names):
            raise DataError(f"{root}: masks were converted for classes {stored}, but "
                            f"{list(class_names)} were asked for")
    _require_some(root, split, files, "with_mask", _has_mask, "a mask")
    dataset = _parsed_records(files, cycle_length, deterministic, shuffle_files, seed)
    dataset = dataset.filter(_has_mask)
    return dataset.map(
        lambda r: (decode_image(r["image/encoded"]), decode_mask(r["mask/encoded"])),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


# --- manifest -------------------------------------------------------------------------

def read_manifest(root: str) -> dict:
    """The parsed ``manifest.json`` of a converted directory (DataError if absent/bad)."""
    path = os.path.join(root, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError as err:
        raise DataError(f"{path}: no manifest; {root} is not a finished coopseg-convert "
                        f"output (re-run coopseg-convert to finish it)") from err
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable manifest ({err})") from err
    version = manifest.get("version") if isinstance(manifest, dict) else None
    if version != MANIFEST_VERSION:
        raise DataError(f"{path}: manifest version {version!r} is not the supported "
                        f"version {MANIFEST_VERSION}")
    return manifest




def write_manifest(root: str, manifest: dict) -> str:
    """Write ``<root>/manifest.json`` atomically (stamping the version); returns its path."""
    path = os.path.join(root, MANIFEST_NAME)
    write_json_atomically(path, {**manifest, "version": MANIFEST_VERSION})
    return path
