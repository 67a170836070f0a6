"""Tests for data_pipelines.pipeline: shapes, determinism, batching, repeat, cache, files."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, DataConfig, LESION_CLASSES
from data_pipelines import pipeline
from data_pipelines.decode import DecodeReport
from data_pipelines.records import GradedExample, MaskExample

CROP = 32
DATA = DataConfig(resize_size=36, random_pad=4, shuffle_buffer=16, affine=True)


def _graded_source(count=10, size=40):
    """An in-memory source with the element structure of decode/tfrecord sources."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(count, dtype=np.int32) % 5))


def _mask_source(count=10, size=40):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    masks = rng.choice(np.array([0, 1, 2, 255], np.uint8), (count, size, size))
    return tf.data.Dataset.from_tensor_slices((images, masks))


def _first_batch(dataset):
    return [t.numpy() for t in next(iter(dataset))]


def test_graded_batches_shapes_and_dtypes():
    for training in (True, False):
        dataset = pipeline.graded_pipeline(_graded_source(), data=DATA, crop_size=CROP,
                                           batch_size=4, training=training, seed=0)
        images, grades = _first_batch(dataset)
        assert images.shape == (4, CROP, CROP, 3) and images.dtype == np.float32
        assert grades.shape == (4,) and grades.dtype == np.int32
        np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    assert dataset.element_spec[0].shape.as_list() == [None, CROP, CROP, 3]  # eval keeps remainder


def test_mask_batches_shapes_dtypes_and_labels():
    dataset = pipeline.mask_pipeline(_mask_source(), data=DATA, crop_size=CROP, batch_size=3,
                                     training=True, seed=0)
    assert dataset.element_spec[1].shape.as_list() == [3, CROP, CROP]
    images, masks = _first_batch(dataset)
    assert images.shape == (3, CROP, CROP, 3) and images.dtype == np.float32
    assert masks.shape == (3, CROP, CROP) and masks.dtype == np.int32
    assert set(np.unique(masks)) <= {0, 1, 2, 255} and 255 in masks  # ignore survives


def test_same_seed_same_batches_different_seed_differs():
    def build(seed):
        return pipeline.mask_pipeline(_mask_source(), data=DATA, crop_size=CROP, batch_size=4,
                                      training=True, seed=seed)

    first, again, other = _first_batch(build(3)), _first_batch(build(3)), _first_batch(build(4))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    # Iterating the same pipeline again is another epoch: new order and draws.
    dataset = pipeline.graded_pipeline(_graded_source(), data=DATA, crop_size=CROP, batch_size=4,
                                       training=True, seed=3, repeat=False)
    assert not np.array_equal(_first_batch(dataset)[0], _first_batch(dataset)[0])


def test_eval_is_deterministic_and_keeps_order():
    def run():
        dataset = pipeline.graded_pipeline(_graded_source(), data=DATA, crop_size=CROP,
                                           batch_size=4, training=False, seed=0)
        return [(images, grades) for images, grades in dataset.as_numpy_iterator()]

    first, second = run(), run()
    assert [g.tolist() for _, g in first] == [[0, 1, 2, 3], [4, 0, 1, 2], [3, 4]]
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_drop_remainder_and_repeat():
    def batch_sizes(**kwargs):
        dataset = pipeline.graded_pipeline(_graded_source(10), data=DATA, crop_size=CROP,
                                           batch_size=4, seed=0, **kwargs)
        return [int(images.shape[0]) for images, _ in dataset.take(6)]

    assert batch_sizes(training=True, repeat=False) == [4, 4]
    assert batch_sizes(training=False) == [4, 4, 2]
    assert batch_sizes(training=False, drop_remainder=True) == [4, 4]
    assert batch_sizes(training=True) == [4] * 6  # repeats by default when training


def test_cache_reuses_decoded_images_after_files_vanish(tmp_path):
    examples = []
    for i in range(6):
        path = str(tmp_path / f"{i}.jpg")
        cv2.imwrite(path, np.full((40, 40, 3), 20 * i, np.uint8))
        examples.append(GradedExample(path, grade=i % 5, image_id=str(i)))
    report = DecodeReport()
    cached = pipeline.graded_dataset(
        examples, data=DataConfig(resize_size=36, cache=True, shuffle_buffer=8), crop_size=CROP,
        batch_size=2, training=True, seed=0, repeat=False, report=report)
    assert sum(int(g.shape[0]) for _, g in cached) == 6
    for example in examples:
        (tmp_path / f"{example.image_id}.jpg").unlink()
    assert sum(int(g.shape[0]) for _, g in cached) == 6  # second epoch from the cache
    assert report.num_bad == 0


def test_mask_dataset_from_files(tmp_path):
    examples = []
    for i in range(3):
        image = str(tmp_path / f"{i}.png")
        cv2.imwrite(image, np.full((40, 44, 3), 60, np.uint8))
        label = np.zeros((40, 44), np.uint8)
        label[10:30, 10:30] = 3
        cv2.imwrite(str(tmp_path / f"{i}_lab.png"), label)
        examples.append(MaskExample(image, str(i), label_path=str(tmp_path / f"{i}_lab.png")))
    data = DataConfig(class_names=LESION_CLASSES)
    dataset = pipeline.mask_dataset(examples, data=data, crop_size=CROP, batch_size=3,
                                    training=False, seed=0)
    images, masks = _first_batch(dataset)
    assert images.shape == (3, CROP, CROP, 3) and masks.shape == (3, CROP, CROP)
    assert masks[:, 16, 16].tolist() == [3, 3, 3] and masks[:, 16, 2].tolist() == [0, 0, 0]
    # 40 x 44 is padded to a square, not stretched: the padding rows are ignored.
    assert masks[:, 0, 0].tolist() == [255, 255, 255]


def test_iterator_checkpoint_restores_position(tmp_path):
    examples = []
    for i in range(5):
        path = str(tmp_path / f"{i}.jpg")
        cv2.imwrite(path, np.full((40, 40, 3), 40 * i, np.uint8))
        examples.append(GradedExample(path, grade=i, image_id=str(i)))
    dataset = pipeline.graded_dataset(examples, data=DATA, crop_size=CROP, batch_size=2,
                                      training=True, seed=1)
    iterator = iter(dataset)
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    saved = checkpoint.save(str(tmp_path / "ckpt" / "it"))
    expected = [next(iterator)[1].numpy().tolist() for _ in range(3)]
    checkpoint.restore(saved)
    assert [next(iterator)[1].numpy().tolist() for _ in range(3)] == expected


def test_crop_larger_than_resize_is_a_config_error():
    with pytest.raises(ConfigError, match="resize_size"):
        pipeline.graded_pipeline(_graded_source(), data=DataConfig(resize_size=24), crop_size=CROP,
                                 batch_size=2, training=True, seed=0)
