"""Tests for data_pipelines.decode and the file reading it uses (data_pipelines.imageio)."""
from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import LESION_CLASSES, LESION_PRIORITY
from data_pipelines import decode, imageio
from data_pipelines.records import DataError, GradedExample, MaskExample

CLASSES = LESION_CLASSES  # background, hard_exudate, soft_exudate, haemorrhage, microaneurysm, ...
NO_MASKS = ("",) * (len(CLASSES) - 1)


def _rgb_image(height=12, width=10):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return str(path)


def _jpeg(path, height=32, width=24):
    return _write(path, np.full((height, width, 3), 128, np.uint8))


def _palette_png(path, indices, palette):
    """A colour-type-3 PNG (OpenCV cannot write one): the VOC SegmentationClass format."""
    def chunk(kind, body):
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc
    height, width = indices.shape
    rows = b"".join(b"\x00" + indices[r].astype(np.uint8).tobytes() for r in range(height))
    data = (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", palette.astype(np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    path.write_bytes(data)
    return str(path)


def _bad_files(tmp_path):
    good = _jpeg(tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    full = (tmp_path / "good.jpg").read_bytes()
    truncated.write_bytes(full[: len(full) - 40])  # cut inside the scan, EOI lost
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    return good, [str(truncated), str(empty), str(text)]


# ------------------------------------------------------------------------ read_image

def test_read_image_normalises_formats_to_rgb_uint8(tmp_path):
    rgb = _rgb_image()
    gray = rgb[:, :, 0]
    rgba_bgr = np.concatenate([rgb[:, :, ::-1], np.full(rgb.shape[:2] + (1,), 7, np.uint8)], 2)
    deep = (rgb[:, :, ::-1].astype(np.uint16) << 8) | 0x00FF
    cases = {
        "gray.png": (_write(tmp_path / "gray.png", gray), np.repeat(gray[:, :, None], 3, 2)),
        # Transparency is composited on black: alpha 7 of 255 leaves 7/255 of each colour.
        "rgba.png": (_write(tmp_path / "rgba.png", rgba_bgr),
                     (rgb.astype(np.uint16) * 7 // 255).astype(np.uint8)),
        "deep.png": (_write(tmp_path / "deep.png", deep), rgb),  # 16 bit: >> 8
        "colour.tif": (_write(tmp_path / "colour.tif", rgb[:, :, ::-1]), rgb),
        "colour.bmp": (_write(tmp_path / "colour.bmp", rgb[:, :, ::-1]), rgb),
    }
    for name, (path, expected) in cases.items():
        image = imageio.read_image(path)
        assert image.dtype == np.uint8 and image.shape == (12, 10, 3), name
        np.testing.assert_array_equal(image, expected, err_msg=name)


def test_read_image_jpeg_is_rgb(tmp_path):
    red_bgr = np.zeros((16, 16, 3), np.uint8)
    red_bgr[:, :, 2] = 200
    image = imageio.read_image(_write(tmp_path / "red.jpg", red_bgr))
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert image[:, :, 0].mean() > 180 and image[:, :, 2].mean() < 20


def test_unreadable_files_raise_naming_the_file(tmp_path):
    _, bad = _bad_files(tmp_path)
    for path in bad + [str(tmp_path / "missing.jpg")]:
        with pytest.raises(imageio.UnreadableImageError, match=path):
            imageio.read_image(path)


# ---------------------------------------------------------------------- graded_source

def test_graded_source_skips_and_counts_bad_files(tmp_path):
    good, bad = _bad_files(tmp_path)
    paths = [good] + bad + [good]
    examples = [GradedExample(p, grade=i, image_id=str(i)) for i, p in enumerate(paths)]
    report = decode.DecodeReport()
    dataset = decode.graded_source(examples, skip_bad=True, report=report)
    assert dataset.element_spec[0].shape.as_list() == [None, None, 3]
    out = [(image.shape, int(grade)) for image, grade in dataset.as_numpy_iterator()]
    assert out == [((32, 24, 3), 0), ((32, 24, 3), 4)]
    assert report.num_bad == 3 and sorted(report.bad_files) == sorted(bad)
    assert "truncated JPEG" in report.bad_files[bad[0]]
    assert "empty file" in report.bad_files[bad[1]]
    list(dataset.as_numpy_iterator())  # a second epoch does not count the files again
    assert report.num_bad == 3


def test_graded_source_strict_error_names_file(tmp_path):
    good, bad = _bad_files(tmp_path)
    dataset = decode.graded_source([GradedExample(good, 0, "a"), GradedExample(bad[0], 1, "b")],
                                   skip_bad=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="truncated.jpg"):
        list(dataset.as_numpy_iterator())


def test_validate_files(tmp_path):
    good, bad = _bad_files(tmp_path)
    examples = [GradedExample(p, 0, p) for p in [good] + bad]
    report = decode.DecodeReport()
    kept = decode.validate_files(examples, strict=False, report=report)
    assert kept == examples[:1] and sorted(report.bad_files) == sorted(bad)
    with pytest.raises(DataError) as error:
        decode.validate_files(examples, strict=True)
    for path in bad:
        assert path in str(error.value)


# ----------------------------------------------------------------------------- masks

def _mask_paths(**by_class):
    return tuple(by_class.get(name, "") for name in CLASSES[1:])


def test_overlapping_masks_follow_priority_and_missing_is_empty(tmp_path):
    image = _jpeg(tmp_path / "im.jpg", 8, 8)
    haem = np.zeros((8, 8, 3), np.uint8)
    haem[0:4, 0:4] = (0, 0, 255)  # IDRiD masks are colour TIFs; any channel > 0 counts
    micro = np.zeros((8, 8), np.uint8)
    micro[2:6, 2:6] = 1
    example = MaskExample(image, "im", mask_paths=_mask_paths(
        haemorrhage=_write(tmp_path / "haem.tif", haem),
        microaneurysm=_write(tmp_path / "micro.png", micro)))
    _, label = imageio.read_mask_example(example, CLASSES, LESION_PRIORITY)
    haem_i, micro_i = CLASSES.index("haemorrhage"), CLASSES.index("microaneurysm")
    assert label[0, 0] == haem_i and label[3, 3] == micro_i  # overlap: microaneurysm first
    assert label[5, 5] == micro_i and label[7, 7] == 0
    assert set(np.unique(label)) == {0, haem_i, micro_i}  # "" paths stay empty
    # With haemorrhage ranked first the overlap flips.
    _, flipped = imageio.read_mask_example(example, CLASSES, ("haemorrhage", "microaneurysm"))
    assert flipped[3, 3] == haem_i


def test_mask_threshold(tmp_path):
    image = _jpeg(tmp_path / "im.jpg", 4, 4)
    soft = np.array([[0, 40, 200, 255]] * 4, np.uint8)
    mask = _write(tmp_path / "m.png", soft)
    example = MaskExample(image, "im", mask_paths=_mask_paths(hard_exudate=mask))
    _, label = imageio.read_mask_example(example, CLASSES, LESION_PRIORITY)
    assert label[0].tolist() == [0, 1, 1, 1]
    _, label = imageio.read_mask_example(example, CLASSES, LESION_PRIORITY, mask_threshold=127)
    assert label[0].tolist() == [0, 0, 1, 1]


def test_mask_size_mismatch_names_both_files(tmp_path):
    image = _jpeg(tmp_path / "im.jpg", 8, 8)
    mask = _write(tmp_path / "big.png", np.zeros((9, 8), np.uint8))
    example = MaskExample(image, "im", mask_paths=_mask_paths(drusen=mask))
    with pytest.raises(DataError, match="big.png.*im.jpg"):
        imageio.read_mask_example(example, CLASSES, LESION_PRIORITY)
    with pytest.raises(DataError, match="big.png"):  # not skippable: an annotation bug
        decode.validate_files([example], class_names=CLASSES, mask_priority=LESION_PRIORITY)
    dataset = decode.mask_source([example], CLASSES, LESION_PRIORITY, skip_bad=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="big.png"):
        list(dataset.as_numpy_iterator())


def test_label_maps_keep_ignore_and_reject_unknown_values(tmp_path):
    image = _jpeg(tmp_path / "im.jpg", 2, 3)
    labels = np.array([[0, 1, 255], [6, 2, 0]], np.uint8)
    example = MaskExample(image, "im", label_path=_write(tmp_path / "lab.png", labels))
    _, label = imageio.read_mask_example(example, CLASSES, LESION_PRIORITY)
    np.testing.assert_array_equal(label, labels)
    bad = MaskExample(image, "im", label_path=_write(tmp_path / "bad.png", labels + 1))
    with pytest.raises(DataError, match=r"bad.png.*\[7\]"):
        imageio.read_mask_example(bad, CLASSES, LESION_PRIORITY)


def test_palette_label_map_reads_indices(tmp_path):
    image = _jpeg(tmp_path / "im.jpg", 2, 4)
    indices = np.array([[0, 1, 2, 255], [3, 3, 0, 255]], np.uint8)
    palette = np.zeros((256, 3), np.uint8)  # unused entries padded with black, like many tools
    palette[[1, 2, 3, 255]] = [(128, 0, 0), (0, 128, 0), (0, 0, 128), (224, 224, 192)]
    label_path = _palette_png(tmp_path / "voc.png", indices, palette)
    example = MaskExample(image, "im", label_path=label_path)
    _, label = imageio.read_mask_example(example, CLASSES, LESION_PRIORITY)
    np.testing.assert_array_equal(label, indices)


def test_mask_source_skips_unreadable_mask(tmp_path):
    good_image = _jpeg(tmp_path / "im.jpg", 8, 8)
    broken_mask = tmp_path / "broken.png"
    broken_mask.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    examples = [
        MaskExample(good_image, "a", mask_paths=_mask_paths(drusen=str(broken_mask))),
        MaskExample(good_image, "b", mask_paths=NO_MASKS),
    ]
    report = decode.DecodeReport()
    dataset = decode.mask_source(examples, CLASSES, LESION_PRIORITY, report=report)
    assert dataset.element_spec[1].shape.as_list() == [None, None]
    out = list(dataset.as_numpy_iterator())
    assert len(out) == 1 and out[0][1].dtype == np.uint8 and not out[0][1].any()
    assert report.num_bad == 1 and "broken.png" in report.bad_files[good_image]


def test_shuffle_seed_permutes_whole_record_order(tmp_path):
    examples = [GradedExample(_jpeg(tmp_path / f"{i}.jpg", 4, 4), grade=i, image_id=str(i))
                for i in range(12)]

    def grades(seed):
        dataset = decode.graded_source(examples, shuffle_seed=seed)
        return [int(g) for _, g in dataset.as_numpy_iterator()]

    assert grades(None) == list(range(12))
    shuffled = grades(5)
    assert sorted(shuffled) == list(range(12)) and shuffled != list(range(12))
    assert grades(5) == shuffled and grades(6) != shuffled
