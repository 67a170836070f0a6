"""Stage 1 of the input pipelines: records -> decoded uint8 examples (DESIGN §3).

``graded_source`` and ``mask_source`` turn the record lists the readers produce
(``records.GradedExample`` / ``records.MaskExample``) into ``tf.data`` datasets of

    graded: (image uint8 [H, W, 3] RGB, grade int32 [])
    masks:  (image uint8 [H, W, 3] RGB, mask uint8 [H, W])  class index, 255 = ignore

the same element structure as the TFRecord sources, so ``pipeline.py`` takes either.

Decoding is OpenCV inside ``tf.numpy_function``: one code path for JPEG, PNG, TIFF and
BMP, grayscale and RGBA, 8 and 16 bit, and errors that name the file. Two kinds of
problems are told apart:

- ``UnreadableImageError`` (empty, truncated, corrupt, not an image, missing): with
  ``skip_bad`` the example is dropped, logged once with its file name and counted in a
  ``DecodeReport``; without it the error is raised.
- any other ``DataError`` (a mask whose size differs from its image, label values that
  are not classes): an annotation bug, always raised; skipping would hide it.

An error raised inside the graph reaches the user wrapped in an InvalidArgumentError
(its message still names the file); ``validate_files`` is the clean, up-front check.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import cv2
import numpy as np
import tensorflow as tf
from absl import logging

from coopseg.config import IGNORE_LABEL, ConfigError
from data_pipelines.records import DataError, GradedExample, MaskExample

# How far before the end of a JPEG its EOI marker may sit: some writers pad the file.
# Inside entropy-coded data 0xFF is always stuffed, so FFD9 cannot occur by chance.
_JPEG_EOI_WINDOW = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Example = TypeVar("Example", GradedExample, MaskExample)


class UnreadableImageError(DataError):
    """A file that cannot be decoded as an image (empty, truncated, corrupt, missing)."""


class DecodeReport:
    """Thread-safe record of the files a source could not read.

    Each file is logged and counted once, however many epochs read it again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bad: Dict[str, str] = {}

    def record(self, path: str, reason: str) -> None:
        with self._lock:
            if path in self._bad:
                return
            self._bad[path] = reason
        logging.warning("Skipping unreadable image %s: %s", path, reason)

    @property
    def bad_files(self) -> Dict[str, str]:
        """file path -> reason, for every file skipped so far."""
        with self._lock:
            return dict(self._bad)

    @property
    def num_bad(self) -> int:
        with self._lock:
            return len(self._bad)


# --------------------------------------------------------------------------- images

def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise UnreadableImageError(f"{path}: cannot read file ({err.strerror})") from err
    if not data:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")
    return data


def _decode_bytes(path: str, data: bytes) -> np.ndarray:
    """Decode with IMREAD_UNCHANGED so 16-bit and alpha are seen, not silently converted.

    EXIF orientation is deliberately not applied (UNCHANGED ignores it): masks are
    drawn on the stored pixel grid, and image and mask must stay on the same one.
    """
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9", -_JPEG_EOI_WINDOW) < 0:
        # libjpeg decodes a truncated file into a grey-padded image with only a warning.
        raise UnreadableImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise UnreadableImageError(f"{path}: not a decodable image ({len(data)} bytes)")
    return array


def _to_uint8(path: str, array: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit by ``>> 8`` (keeps absolute intensity, the same for every image)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    raise UnreadableImageError(f"{path}: unsupported pixel type {array.dtype} (need 8 or 16 bit)")


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8 ``[H, W, 3]``.

    Grayscale is replicated to 3 channels, alpha is dropped, 16-bit is shifted to 8-bit.
    Raises UnreadableImageError naming the file when it cannot be decoded.
    """
    array = _to_uint8(path, _decode_bytes(path, _read_bytes(path)))
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels in (1, 2):  # gray, gray + alpha
        return np.repeat(array[:, :, :1], 3, axis=2)
    if channels in (3, 4):  # BGR, BGRA
        return np.ascontiguousarray(array[:, :, 2::-1])
    raise UnreadableImageError(f"{path}: unsupported channel count {channels}")


# ---------------------------------------------------------------------------- masks

def _png_palette(data: bytes) -> Optional[np.ndarray]:
    """The PLTE of a palette (colour type 3) PNG as ``[N, 3]`` RGB, else None."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    offset, palette_png = len(_PNG_SIGNATURE), False
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset:offset + 4], "big")
        kind, body = data[offset + 4:offset + 8], data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            palette_png = len(body) > 9 and body[9] == 3
        elif kind == b"PLTE":
            return np.frombuffer(body, np.uint8).reshape(-1, 3) if palette_png else None
        elif kind in (b"IDAT", b"IEND"):
            return None
        offset += 12 + length
    return None


def _palette_indices(path: str, bgr: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Undo OpenCV's palette expansion: map each pixel colour back to its index.

    Where the palette repeats a colour (unused entries are often padded with black),
    the lowest index wins, which is the one the colour was meant for.
    """
    codes = palette.astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    unique, first = np.unique(codes, return_index=True)
    rgb = bgr[:, :, 2::-1].astype(np.int64)
    pixels = (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]
    position = np.clip(np.searchsorted(unique, pixels), 0, len(unique) - 1)
    if np.any(unique[position] != pixels):
        raise DataError(f"{path}: pixel colours outside the PNG palette")
    return first[position]


def read_label_map(path: str, num_classes: int) -> np.ndarray:
    """Read a class-index map (PNG; palette PNGs as in VOC are mapped back to indices).

    Values must be class indices (< num_classes) or IGNORE_LABEL (255); anything else
    is a DataError naming the file and the values, not a silent clamp.
    """
    data = _read_bytes(path)
    array = _decode_bytes(path, data)
    palette = _png_palette(data)
    if palette is not None and array.ndim == 3:
        array = _palette_indices(path, array, palette)
    elif array.ndim != 2:
        raise DataError(
            f"{path}: label map has {array.shape[2]} channels; a class-index map must be "
            "single-channel (or a palette PNG)")
    values = np.unique(array)
    bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
    if bad.size:
        raise DataError(
            f"{path}: label values {bad[:10].tolist()} are neither class indices "
            f"(0..{num_classes - 1}) nor ignore ({IGNORE_LABEL})")
    return array.astype(np.uint8)


def read_binary_mask(path: str, threshold: int = 0) -> np.ndarray:
    """Read one lesion mask as bool ``[H, W]``: foreground where any colour channel > threshold.

    IDRiD masks are 3-channel TIFs with foreground > 0 (hence the default); use e.g.
    127 for anti-aliased PNG masks. 16-bit masks are shifted to 8 bit first.
    """
    array = _to_uint8(path, _decode_bytes(path, _read_bytes(path)))
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2)  # alpha is not a colour
    return array > threshold


def _priority_order(class_names: Sequence[str], mask_priority: Sequence[str]) -> List[int]:
    """Class indices from the lowest to the highest priority (so the last painted wins)."""
    foreground = list(class_names[1:])
    unknown = [name for name in mask_priority if name not in foreground]
    if unknown:
        raise ConfigError(f"data.mask_priority names {unknown}, not in class_names {foreground}")
    ranked = list(mask_priority) + [name for name in foreground if name not in mask_priority]
    return [class_names.index(name) for name in reversed(ranked)]


def read_mask_example(
    example: MaskExample,
    class_names: Sequence[str],
    mask_priority: Sequence[str],
    mask_threshold: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Decode one MaskExample to (RGB uint8 [H, W, 3], class-index uint8 [H, W]).

    Binary masks (``mask_paths``, in ``class_names[1:]`` order, "" = empty) collapse to
    one index per pixel by ``mask_priority`` (first wins). A mask of another size than
    its image is a DataError naming both files: it is never resized to fit.
    """
    image = read_image(example.image_path)
    height, width = image.shape[:2]
    if bool(example.label_path) == bool(example.mask_paths):
        raise DataError(
            f"{example.image_path}: a mask example needs exactly one of label_path or "
            f"mask_paths (got label_path={example.label_path!r}, "
            f"{len(example.mask_paths)} mask_paths)")
    if example.label_path:
        masks = {0: (example.label_path, read_label_map(example.label_path, len(class_names)))}
    else:
        if len(example.mask_paths) != len(class_names) - 1:
            raise DataError(
                f"{example.image_path}: {len(example.mask_paths)} mask_paths for "
                f"{len(class_names) - 1} foreground classes {tuple(class_names[1:])}")
        masks = {index: (path, read_binary_mask(path, mask_threshold))
                 for index, path in enumerate(example.mask_paths, start=1) if path}
    for path, mask in masks.values():
        if mask.shape[:2] != (height, width):
            raise DataError(
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{example.image_path} is {width}x{height} (width x height)")
    if example.label_path:
        return image, masks[0][1]
    label = np.zeros((height, width), np.uint8)
    for index in _priority_order(class_names, mask_priority):
        if index in masks:
            label[masks[index][1]] = index
    return image, label


# ------------------------------------------------------------------ tf.data sources

def _source_options() -> tf.data.Options:
    options = tf.data.Options()
    # Decoding is a pure function of the record index, so an iterator checkpoint that
    # ignores the Python function's "external state" restores exactly (DESIGN §4).
    options.experimental_external_state_policy = (
        tf.data.experimental.ExternalStatePolicy.IGNORE)
    return options


def _decode_and_drop_failed(dataset: tf.data.Dataset, decode_in_graph,
                            shuffle_seed: Optional[int]) -> tf.data.Dataset:
    """Map the decoder (parallel, in order), then drop and strip its trailing ``ok`` flag.

    The optional shuffle permutes record indices, not pixels, so it can cover the whole
    set: readers list files sorted (EyePACS ``10_left`` next to ``10_right``), which a
    bounded shuffle buffer after decoding would only mix locally. AutoGraph is
    skipped: nothing here needs it, and it only adds tracing time.
    """
    if shuffle_seed is not None:
        dataset = dataset.shuffle(max(1, int(dataset.cardinality())), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
    plain = tf.autograph.experimental.do_not_convert
    dataset = dataset.map(plain(decode_in_graph), tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.filter(plain(lambda *element: element[-1]))
    dataset = dataset.map(plain(lambda *element: element[:-1]))
    return dataset.with_options(_source_options())


def graded_source(
    examples: Sequence[GradedExample],
    *,
    skip_bad: bool = True,
    report: Optional[DecodeReport] = None,
    shuffle_seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Dataset of ``(image uint8 [H, W, 3], grade int32 [])``, in the order of ``examples``.

    With ``skip_bad`` unreadable images are dropped and recorded in ``report`` (pass
    one to read the count); otherwise they raise. Decoding runs in parallel with a
    deterministic order (OpenCV releases the GIL while it decodes). ``shuffle_seed``
    shuffles the whole record order before decoding, anew each iteration; see
    ``_decode_and_drop_failed``.
    """
    report = report if report is not None else DecodeReport()
    examples = list(examples)

    def decode(index: np.int64) -> Tuple[np.ndarray, np.bool_]:
        example = examples[int(index)]
        try:
            return read_image(example.image_path), np.bool_(True)
        except UnreadableImageError as err:
            if not skip_bad:
                raise
            report.record(example.image_path, str(err))
            return np.zeros((1, 1, 3), np.uint8), np.bool_(False)

    def decode_in_graph(index, grade):
        image, ok = tf.numpy_function(decode, [index], (tf.uint8, tf.bool), name="decode_image")
        return tf.ensure_shape(image, [None, None, 3]), grade, ok

    grades = np.array([example.grade for example in examples], np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(examples), dtype=np.int64), grades))
    return _decode_and_drop_failed(dataset, decode_in_graph, shuffle_seed)


def mask_source(
    examples: Sequence[MaskExample],
    class_names: Sequence[str],
    mask_priority: Sequence[str],
    *,
    skip_bad: bool = True,
    report: Optional[DecodeReport] = None,
    mask_threshold: int = 0,
    shuffle_seed: Optional[int] = None,
) -> tf.data.Dataset:
    """Dataset of ``(image uint8 [H, W, 3], mask uint8 [H, W])``; see ``read_mask_example``.

    ``skip_bad`` drops unreadable image or mask files (recorded in ``report``);
    annotation errors (size mismatch, values that are not classes) always raise.
    ``shuffle_seed`` as in ``graded_source``.
    """
    if len(class_names) > IGNORE_LABEL:
        raise ConfigError(f"{len(class_names)} classes do not fit a uint8 mask with ignore 255")
    report = report if report is not None else DecodeReport()
    examples = list(examples)
    if any(example.mask_paths for example in examples):
        _priority_order(class_names, mask_priority)  # fail now on a bad priority list

    def decode(index: np.int64) -> Tuple[np.ndarray, np.ndarray, np.bool_]:
        example = examples[int(index)]
        try:
            image, mask = read_mask_example(example, class_names, mask_priority, mask_threshold)
            return image, mask, np.bool_(True)
        except UnreadableImageError as err:
            if not skip_bad:
                raise
            report.record(example.image_path, str(err))
            return np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.uint8), np.bool_(False)

    def decode_in_graph(index):
        image, mask, ok = tf.numpy_function(
            decode, [index], (tf.uint8, tf.uint8, tf.bool), name="decode_image_and_mask")
        return tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(mask, [None, None]), ok

    dataset = tf.data.Dataset.range(len(examples))
    return _decode_and_drop_failed(dataset, decode_in_graph, shuffle_seed)


# ----------------------------------------------------------------------- pre-flight

def validate_files(
    examples: Sequence[Example],
    *,
    class_names: Sequence[str] = (),
    mask_priority: Sequence[str] = (),
    strict: bool = False,
    report: Optional[DecodeReport] = None,
    mask_threshold: int = 0,
    num_threads: Optional[int] = None,
) -> List[Example]:
    """Decode every example once, before training, and return the usable ones.

    The errors a source would raise mid-epoch inside the graph surface here as one
    plain DataError that lists every offending file. Unreadable files are recorded
    in ``report`` and left out (or, when ``strict``, raise); annotation errors always
    raise. ``class_names``/``mask_priority`` are needed for MaskExamples only.

    Cost: one full decode of every image and mask, spread over ``num_threads``
    (default: all cores; OpenCV releases the GIL). Roughly the time of one
    decode-only epoch, so it is optional: a source skips or raises by itself anyway.
    """
    report = report if report is not None else DecodeReport()

    def check(example: Union[GradedExample, MaskExample]) -> Optional[DataError]:
        try:
            if isinstance(example, MaskExample):
                read_mask_example(example, class_names, mask_priority, mask_threshold)
            else:
                read_image(example.image_path)
        except DataError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=num_threads or os.cpu_count() or 1) as pool:
        errors = list(pool.map(check, examples))
    fatal = [err for err in errors
             if err is not None and (strict or not isinstance(err, UnreadableImageError))]
    if fatal:
        listed = "\n  ".join(str(err) for err in fatal[:20])
        more = f"\n  ... and {len(fatal) - 20} more" if len(fatal) > 20 else ""
        raise DataError(f"{len(fatal)} of {len(examples)} examples are unusable:\n  {listed}{more}")
    kept = []
    for example, err in zip(examples, errors):
        if err is None:
            kept.append(example)
        else:
            report.record(example.image_path, str(err))
    return kept
