"""Tests for data_pipelines.tfrecords: schema round trip, shards, sources, manifest."""
import os

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import tfrecords
from data_pipelines.records import DataError


def _record(index, size=12, grade=None, with_mask=True, encoding="png"):
    rng = np.random.default_rng(index)
    image = rng.integers(0, 256, (size, size + 2, 3)).astype(np.uint8)
    mask = rng.integers(0, 4, (size, size + 2)).astype(np.uint8)
    mask[0, :3] = 255  # ignore label must survive exactly
    record = tfrecords.EncodedRecord(
        image_id=f"img_{index:02d}", image_encoded=tfrecords.encode_image(image, encoding),
        image_format=encoding, height=size, width=size + 2,
        grade=index % 5 if grade is None else grade,
        mask_encoded=tfrecords.encode_image(mask, "png") if with_mask else b"",
        labels=(1, 0, int(index % 2)) if with_mask else ())
    return record, image, mask


def _write(tmp_path, records, num_shards=2, split="train"):
    return tfrecords.write_shards([r for r, _, _ in records], str(tmp_path), split, num_shards)


def test_png_round_trip_is_exact_including_ignore_label():
    record, image, mask = _record(3)
    parsed = tfrecords.parse_example(tfrecords.serialize_record(record))
    np.testing.assert_array_equal(tfrecords.decode_image(parsed["image/encoded"]).numpy(), image)
    np.testing.assert_array_equal(tfrecords.decode_mask(parsed["mask/encoded"]).numpy(), mask)
    assert parsed["image/id"].numpy() == b"img_03"
    assert parsed["image/format"].numpy() == b"png"
    assert int(parsed["image/grade"]) == 3
    assert parsed["image/labels"].numpy().tolist() == [1, 0, 1]
    assert (int(parsed["image/height"]), int(parsed["image/width"])) == (12, 14)


def test_jpeg_round_trip_is_close_and_maskless_record_has_empty_mask():
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    record = tfrecords.EncodedRecord("smooth", tfrecords.encode_image(smooth, "jpeg"), "jpeg",
                                     32, 32)
    parsed = tfrecords.parse_example(tfrecords.serialize_record(record))
    decoded = tfrecords.decode_image(parsed["image/encoded"]).numpy()
    assert np.abs(decoded.astype(int) - smooth).mean() < 3
    assert parsed["mask/encoded"].numpy() == b""
    assert int(parsed["image/grade"]) == -1 and parsed["image/labels"].shape == (0,)


def test_write_shards_deals_records_round_robin(tmp_path):
    records = [_record(i) for i in range(5)]
    paths = _write(tmp_path, records)
    assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002.tfrecord",
                                                   "train-00001-of-00002.tfrecord"]
    ids = [[tfrecords.parse_example(s)["image/id"].numpy().decode()
            for s in tf.data.TFRecordDataset(p)] for p in paths]
    assert ids == [["img_00", "img_02", "img_04"], ["img_01", "img_03"]]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".partial")]


def test_graded_source_structure_values_and_ungraded_records_dropped(tmp_path):
    records = [_record(i) for i in range(4)] + [_record(9, grade=-1)]
    _write(tmp_path, records)
    dataset = tfrecords.graded_source_from_tfrecords(str(tmp_path), "train", cycle_length=2)
    image_spec, grade_spec = dataset.element_spec
    assert image_spec.dtype == tf.uint8 and image_spec.shape.as_list() == [None, None, 3]
    assert grade_spec.dtype == tf.int32 and grade_spec.shape.rank == 0
    elements = [(image.numpy(), int(grade)) for image, grade in dataset]
    # Interleave over the two shards [0, 2, 4=-1 dropped] and [1, 3]: 0, 1, 2, 3.
    assert [grade for _, grade in elements] == [0, 1, 2, 3]
    for (image, _), (_, expected, _) in zip(elements, records):
        np.testing.assert_array_equal(image, expected)


def test_mask_source_structure_and_exact_masks(tmp_path):
    records = [_record(i) for i in range(3)] + [_record(7, with_mask=False)]
    _write(tmp_path, records, num_shards=1)
    dataset = tfrecords.mask_source_from_tfrecords(str(tmp_path))
    image_spec, mask_spec = dataset.element_spec
    assert image_spec.dtype == tf.uint8 and image_spec.shape.as_list() == [None, None, 3]
    assert mask_spec.dtype == tf.uint8 and mask_spec.shape.as_list() == [None, None]
    masks = [mask.numpy() for _, mask in dataset]
    assert len(masks) == 3  # the maskless record is dropped
    for mask, (_, _, expected) in zip(masks, records):
        np.testing.assert_array_equal(mask, expected)


def test_sources_refuse_splits_without_grades_or_masks(tmp_path):
    _write(tmp_path, [_record(i, grade=-1, with_mask=False) for i in range(2)], num_shards=1)
    with pytest.raises(DataError, match="grade"):
        tfrecords.graded_source_from_tfrecords(str(tmp_path))  # no manifest: first record
    with pytest.raises(DataError, match="mask"):
        tfrecords.mask_source_from_tfrecords(str(tmp_path))
    tfrecords.write_manifest(str(tmp_path),
                             {"splits": {"train": {"with_grade": 0, "with_mask": 2}}})
    with pytest.raises(DataError, match="with_grade=0"):
        tfrecords.graded_source_from_tfrecords(str(tmp_path))


def test_tfrecord_files_errors_name_root_and_split(tmp_path):
    with pytest.raises(DataError, match=rf"'val'.*{tmp_path}"):
        tfrecords.tfrecord_files(str(tmp_path), "val")
    paths = _write(tmp_path, [_record(i) for i in range(6)], num_shards=3)
    _write(tmp_path, [_record(i) for i in range(2)], num_shards=1, split="train-extra")
    assert tfrecords.tfrecord_files(str(tmp_path), "train") == paths  # not train-extra's
    os.remove(paths[1])
    with pytest.raises(DataError, match="missing 1 of 3 shards.*train-00001-of-00003"):
        tfrecords.tfrecord_files(str(tmp_path), "train")
    with pytest.raises(DataError, match="missing"):
        tfrecords.mask_source_from_tfrecords(str(tmp_path))
    _write(tmp_path, [_record(0)], num_shards=1)
    with pytest.raises(DataError, match="mixes shard sets"):
        tfrecords.tfrecord_files(str(tmp_path), "train")


def test_manifest_round_trip_and_errors(tmp_path):
    with pytest.raises(DataError, match="no manifest"):
        tfrecords.read_manifest(str(tmp_path))
    content = {"class_names": ["background", "a"], "counts": {"train": 3}}
    tfrecords.write_manifest(str(tmp_path), content)
    expected = {**content, "version": tfrecords.MANIFEST_VERSION}
    assert tfrecords.read_manifest(str(tmp_path)) == expected
    (tmp_path / "manifest.json").write_text('{"version": 99}')
    with pytest.raises(DataError, match="version 99"):
        tfrecords.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="unreadable manifest"):
        tfrecords.read_manifest(str(tmp_path))


def test_mask_source_checks_class_names_against_manifest(tmp_path):
    _write(tmp_path, [_record(0)], num_shards=1)
    tfrecords.write_manifest(str(tmp_path), {"class_names": ["background", "a", "b", "c"],
                                             "splits": {"train": {"with_mask": 1}}})
    tfrecords.mask_source_from_tfrecords(str(tmp_path), class_names=("background", "a", "b", "c"))
    with pytest.raises(DataError, match="converted for classes"):
        tfrecords.mask_source_from_tfrecords(str(tmp_path), class_names=("background", "x"))
