"""Reading image, label-map and mask files into numpy arrays (and writing palette PNGs).

The one place that turns files into pixels: the tf.data sources (``decode``), the
offline converter (``conversion``) and the VOC reader all call it, so every path decodes
the same pixels and reports bad files the same way. numpy and OpenCV only: a reader can
import it without TensorFlow.
"""
from __future__ import annotations

import os
import struct
import zlib
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from coopseg.config import IGNORE_LABEL, ConfigError, partial_label
from data_pipelines.drawn_annotations import draw_masks
from data_pipelines.records import DataError, MaskExample

# How far before the end of a JPEG its EOI marker may sit: some writers pad the file.
# Inside entropy-coded data 0xFF is always stuffed, so FFD9 cannot occur by chance.
_JPEG_EOI_WINDOW = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class UnreadableImageError(DataError):
    """A file that cannot be decoded as an image (empty, truncated, corrupt, missing).

    Noise in a big set, which callers may skip and count. Any other ``DataError`` (a mask
    whose size differs from its image, label values that are not classes, colours
    outside a palette) is an annotation bug and never skipped.
    """


# ------------------------------------------------------------------- bytes -> array

def read_bytes(path: str) -> bytes:
    """The file's bytes; UnreadableImageError naming it when missing or empty."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise UnreadableImageError(f"{path}: cannot read file ({err.strerror})") from err
    if not data:
        raise UnreadableImageError(f"{path}: empty file (0 bytes)")
    return data


def decode_unchanged(path: str, data: bytes) -> np.ndarray:
    """Decode with IMREAD_UNCHANGED so 16-bit and alpha are seen, not silently converted.

    A JPEG without its end-of-image marker is an UnreadableImageError: libjpeg decodes
    a truncated file into a grey-padded image with only a warning. EXIF orientation is
    deliberately not applied (UNCHANGED ignores it): masks are drawn on the stored
    pixel grid, and image and mask must stay on the same one.
    """
    if data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9", -_JPEG_EOI_WINDOW) < 0:
        raise UnreadableImageError(f"{path}: truncated JPEG (no end-of-image marker)")
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.size == 0:
        raise UnreadableImageError(f"{path}: not a decodable image ({len(data)} bytes)")
    return array


def to_uint8(path: str, array: np.ndarray) -> np.ndarray:
    """16-bit -> 8-bit by ``>> 8`` (keeps absolute intensity, the same for every image)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    raise UnreadableImageError(f"{path}: unsupported pixel type {array.dtype} (need 8 or 16 bit)")


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8 ``[H, W, 3]`` (``read_image_with_note`` without
    its note)."""
    return read_image_with_note(path)[0]


def read_image_with_note(path: str) -> Tuple[np.ndarray, str]:
    """Read an image file as RGB uint8 ``[H, W, 3]``, and a note on what was changed.

    One OpenCV code path covers JPEG, PNG, TIFF and BMP, grayscale and RGBA, 8 and 16 bit.
    Grayscale is replicated to 3 channels and 16-bit is shifted to 8-bit. Transparency is
    composited on black (a transparent pixel is no retina, like the black frame around
    it); the note says so, with the transparent share, whenever a pixel was not opaque.
    Raises UnreadableImageError naming the file when it cannot be decoded.
    """
    array = to_uint8(path, decode_unchanged(path, read_bytes(path)))
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels not in (1, 2, 3, 4):
        raise UnreadableImageError(f"{path}: unsupported channel count {channels}")
    colour = array[:, :, :1] if channels <= 2 else array[:, :, 2::-1]  # gray or BGR -> RGB
    colour = np.repeat(colour, 3, axis=2) if channels <= 2 else np.ascontiguousarray(colour)
    note = ""
    if channels in (2, 4):
        alpha = array[:, :, -1:]
        if (alpha < 255).any():
            transparent = float(np.mean(alpha < 255))
            colour = (colour.astype(np.uint16) * alpha // 255).astype(np.uint8)
            note = (f"transparency ({100 * transparent:.1f}% of pixels not opaque) "
                    "composited on black")
    return colour, note


# ------------------------------------------------------------ colours -> class index

def is_png(data: bytes) -> bool:
    """Whether ``data`` starts with the PNG signature."""
    return data.startswith(_PNG_SIGNATURE)


def png_palette(data: bytes) -> Optional[np.ndarray]:
    """The PLTE of a palette (colour type 3) PNG as ``[N, 3]`` RGB uint8, else None.

    OpenCV expands palette PNGs to BGR(A) and cannot return the indices, and PIL is not
    a dependency; so the chunk headers are read here, up to the first image data.
    """
    if not is_png(data):
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


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colours_to_indices(path: str, rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Map each RGB pixel ``[H, W, 3]`` to its index in ``palette`` ``[N, 3]`` (uint8).

    Undoes OpenCV's palette expansion, or applies a colormap such as VOC's. Where the
    palette repeats a colour (unused entries are often padded with black), the lowest
    index wins, which is the one the colour was meant for. A colour the palette lacks
    is a DataError naming the file.
    """
    keys, first_index = np.unique(_pack_rgb(palette), return_index=True)
    packed = _pack_rgb(rgb)
    position = np.clip(np.searchsorted(keys, packed), 0, len(keys) - 1)
    known = keys[position] == packed
    if not known.all():
        colour = tuple(int(c) for c in rgb[~known][0])
        raise DataError(f"{path}: {int((~known).sum())} pixel(s) have colours outside the "
                        f"palette, e.g. RGB {colour}")
    return first_index[position].astype(np.uint8)


# ------------------------------------------------------------------ label maps, masks

def read_label_map(path: str, num_classes: int) -> np.ndarray:
    """Read a class-index map (PNG; palette PNGs as in VOC are mapped back to indices).

    Values must be class indices (< num_classes) or IGNORE_LABEL (255); anything else
    is a DataError naming the file and the values, not a silent clamp.
    """
    data = read_bytes(path)
    array = decode_unchanged(path, data)
    palette = png_palette(data)
    if palette is not None and array.ndim == 3:
        array = colours_to_indices(path, array[:, :, 2::-1], palette)  # BGR(A) -> RGB
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
    array = to_uint8(path, decode_unchanged(path, read_bytes(path)))
    if array.ndim == 3:
        array = array[:, :, :3].max(axis=2)  # alpha is not a colour
    return array > threshold


def mask_paint_order(class_names: Sequence[str], mask_priority: Sequence[str]) -> List[int]:
    """Class indices from the lowest to the highest priority (so the last painted wins).

    Foreground classes ``mask_priority`` leaves out rank after it, in ``class_names``
    order. A priority naming an unknown class is a ConfigError.
    """
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

    Binary masks (``mask_paths``, in ``class_names[1:]`` order, "" = empty; or the
    masks of a ``drawn`` annotation, rasterised at the image's size) collapse to
    one index per pixel by ``mask_priority`` (first wins). A mask of another size than
    its image is a DataError naming both files: it is never resized to fit. In a
    partially annotated example (``example.annotated``) an unmarked pixel gets the
    partial label (``config.partial_label``) instead of background.
    """
    image = read_image(example.image_path)
    height, width = image.shape[:2]
    if bool(example.label_path) + bool(example.mask_paths) + bool(example.drawn) != 1:
        raise DataError(
            f"{example.image_path}: a mask example needs exactly one of label_path, "
            f"mask_paths or drawn (got label_path={example.label_path!r}, "
            f"{len(example.mask_paths)} mask_paths, drawn={example.drawn})")
    if example.label_path:
        masks = {0: (example.label_path, read_label_map(example.label_path, len(class_names)))}
    elif example.drawn:
        drawn = draw_masks(example.drawn, class_names, height, width)
        masks = {index: (example.drawn.paths[0], mask) for index, mask in drawn.items()}
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
    unmarked = partial_label(example.annotated) if example.is_partial else 0
    if example.is_partial and len(example.annotated) != len(class_names) - 1:
        raise DataError(f"{example.image_path}: {len(example.annotated)} annotated flags for "
                        f"{len(class_names) - 1} foreground classes {tuple(class_names[1:])}")
    if example.label_path:
        label = masks[0][1]
        return image, (np.where(label == 0, unmarked, label).astype(np.uint8)
                       if unmarked else label)
    label = np.full((height, width), unmarked, np.uint8)
    for index in mask_paint_order(class_names, mask_priority):
        if index in masks:
            label[masks[index][1]] = index
    return image, label


# ------------------------------------------------------------------ palette PNG writer

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_palette_png(path: str, indices: np.ndarray, palette: np.ndarray) -> None:
    """Write ``indices`` (uint8 H x W) as an 8-bit palette PNG (colour type 3).

    The format of VOC's ``SegmentationClass`` files, whose pixel values are class
    indices; OpenCV only writes grey or colour PNGs and PIL is not a dependency, so the
    chunks are assembled here (zlib, filter type 0 on every row). ``palette`` is
    ``[N, 3]`` RGB, N <= 256, and must cover every index used. The parent directory is
    created. The bytes depend only on the inputs (and zlib), so files are reproducible.
    Used for the synthetic VOC set and the tests.
    """
    indices = np.asarray(indices)
    palette = np.asarray(palette)
    if indices.ndim != 2 or indices.dtype != np.uint8 or indices.size == 0:
        raise ConfigError(f"{path}: palette PNG indices must be a non-empty 2-D uint8 array, "
                          f"got {indices.dtype} of shape {indices.shape}")
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= len(palette) <= 256:
        raise ConfigError(f"{path}: palette must be [N, 3] with 1 <= N <= 256, got "
                          f"{palette.shape}")
    if int(indices.max()) >= len(palette):
        raise ConfigError(f"{path}: index {int(indices.max())} beyond the palette's "
                          f"{len(palette)} entries")
    height, width = indices.shape
    # Each row is prefixed by its filter type byte (0 = none).
    rows = np.concatenate([np.zeros((height, 1), np.uint8), indices], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit, palette
    png = (_PNG_SIGNATURE + _png_chunk(b"IHDR", header)
           + _png_chunk(b"PLTE", palette.astype(np.uint8).tobytes())
           + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + _png_chunk(b"IEND", b""))
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(png)
