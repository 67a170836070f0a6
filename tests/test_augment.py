"""Tests for data_pipelines.augment: image/mask alignment, seeding, colour, standardisation."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, DataConfig
from data_pipelines import augment

AFFINE = augment.AffineRanges()
NO_MOTION = augment.AffineRanges(rotation_degrees=0.0, zoom=(1.0, 1.0), shear_degrees=0.0,
                                 translation_fraction=0.0)


def _encoded_pair(size=64, block=8):
    """A blocky class mask and an image whose red channel encodes it (class * 40 + 10)."""
    rng = np.random.default_rng(1)
    mask = np.kron(rng.integers(0, 6, (size // block, size // block)), np.ones((block, block)))
    mask = mask.astype(np.uint8)
    image = np.stack([mask * 40.0 + 10.0, rng.uniform(0, 255, mask.shape),
                      np.full(mask.shape, 50.0)], axis=-1).astype(np.float32)
    return image, mask


def _recover(image):
    """The class a pixel's red value encodes; filled (black) area decodes to 0 = background."""
    return np.clip(np.round((image[:, :, 0] - 10.0) / 40.0), 0, 5).astype(np.uint8)


def _interior(mask, radius=2):
    """Pixels whose (2r+1)^2 neighbourhood is in view and holds one class.

    That excludes interpolation borders: between classes, and between picture and the
    fill at the crop edge, where the neighbour that was blended in is out of view.
    """
    padded = np.pad(mask, radius, constant_values=255)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1,) * 2)
    return (windows == mask[:, :, None, None]).all(axis=(2, 3))


def _geometry(image, mask, seed, affine):
    out_image, out_mask = augment.random_geometry(
        tf.constant(image), tf.constant(mask), tf.constant([seed, 7], tf.int64),
        crop_size=48, flip_left_right=True, flip_up_down=True, random_pad=6,
        affine=affine)
    return out_image.numpy(), out_mask.numpy()


def test_crop_flip_pad_keep_mask_aligned_exactly():
    image, mask = _encoded_pair()
    outputs = []
    for seed in range(8):
        out_image, out_mask = _geometry(image, mask, seed, affine=None)
        assert out_image.shape == (48, 48, 3) and out_mask.shape == (48, 48)
        np.testing.assert_array_equal(_recover(out_image), out_mask)
        outputs.append(out_mask)
    assert len({o.tobytes() for o in outputs}) == len(outputs)  # each seed moves differently


def test_affine_keeps_mask_aligned_away_from_borders():
    image, mask = _encoded_pair(block=16)
    for seed in range(8):
        out_image, out_mask = _geometry(image, mask, seed, affine=AFFINE)
        interior = _interior(out_mask)
        assert interior.mean() > 0.3
        np.testing.assert_array_equal(_recover(out_image)[interior], out_mask[interior])
        assert set(np.unique(out_mask)) <= set(range(6))  # nearest: no blended classes
    no_warp, _ = _geometry(image, mask, 0, affine=None)
    warped, _ = _geometry(image, mask, 0, affine=AFFINE)
    assert not np.allclose(no_warp, warped)


def test_identity_affine_changes_nothing():
    image, mask = _encoded_pair(size=48)
    no_warp = _geometry(image, mask, 3, affine=None)
    identity = _geometry(image, mask, 3, affine=NO_MOTION)
    np.testing.assert_allclose(identity[0], no_warp[0], atol=1e-3)
    np.testing.assert_array_equal(identity[1], no_warp[1])


def test_same_seed_same_output_different_seed_different():
    image, _ = _encoded_pair()
    data = DataConfig(affine=True)

    def run(seed):
        return augment.augment_for_classifier(
            tf.constant(image.astype(np.uint8)), tf.constant([seed, 0], tf.int64),
            crop_size=48, data=data).numpy()

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.allclose(run(1), run(2))


def test_segmentation_view_is_standardised_geometry_without_colour():
    image, mask = _encoded_pair()
    seed = tf.constant([5, 1], tf.int64)
    data = DataConfig(affine=True, random_pad=6)
    out_image, out_mask = augment.augment_for_segmentation(
        tf.constant(image.astype(np.uint8)), tf.constant(mask), seed, crop_size=48, data=data)
    geo_image, geo_mask = augment.random_geometry(
        tf.constant(image.astype(np.uint8).astype(np.float32)), tf.constant(mask), seed,
        crop_size=48, flip_left_right=True, flip_up_down=True, random_pad=6,
        affine=augment.AffineRanges())
    assert out_image.dtype == tf.float32 and out_mask.dtype == tf.int32
    np.testing.assert_allclose(out_image, augment.standardize(geo_image), atol=1e-5)
    np.testing.assert_array_equal(out_mask, geo_mask)


def test_colour_jitter_only_for_classifier():
    rng = np.random.default_rng(2)
    image = tf.constant(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = tf.zeros((32, 32), tf.uint8)
    still = dict(flip_left_right=False, flip_up_down=False, random_pad=0, affine=False)  # geometry becomes the identity
    plain = augment.standardize(image).numpy()
    seed = tf.constant([3, 3], tf.int64)
    jittered = augment.augment_for_classifier(
        image, seed, crop_size=32, data=DataConfig(color_jitter="mild", **still)).numpy()
    unjittered = augment.augment_for_classifier(
        image, seed, crop_size=32, data=DataConfig(color_jitter="none", **still)).numpy()
    segmented, _ = augment.augment_for_segmentation(
        image, mask, seed, crop_size=32, data=DataConfig(color_jitter="mild", **still))
    np.testing.assert_allclose(unjittered, plain, atol=1e-4)
    np.testing.assert_allclose(segmented.numpy(), plain, atol=1e-4)
    assert np.abs(jittered - plain).mean() > 0.02


def test_standardisation():
    rng = np.random.default_rng(3)
    image = tf.constant(rng.uniform(20, 90, (40, 30, 3)), tf.float32)
    out = augment.standardize(image).numpy()
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-4 and abs(out.std() - 1.0) < 1e-3


def test_resize_keeps_classes_and_dtype():
    rng = np.random.default_rng(4)
    mask = rng.choice(np.array([0, 3, 255], np.uint8), size=(37, 53))
    resized = augment.resize_mask(tf.constant(mask), 16).numpy()
    assert resized.shape == (16, 16) and resized.dtype == np.uint8
    assert set(np.unique(resized)) <= {0, 3, 255}
    image = augment.resize_image(tf.constant(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)), 16)
    assert image.shape == (16, 16, 3) and image.dtype == tf.uint8


def test_affine_transform_matrix_is_identity_without_motion():
    params = augment.random_affine_transform(tf.constant([1, 2], tf.int64), 32, 32, NO_MOTION)
    np.testing.assert_allclose(params.numpy(), [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-5)


def test_affine_rotation_turns_about_the_centre():
    # Only rotation, drawn in [-90, 90] degrees: the centre pixel stays where it is.
    ranges = augment.AffineRanges(rotation_degrees=90.0, zoom=(1.0, 1.0), shear_degrees=0.0,
                                  translation_fraction=0.0)
    params = augment.random_affine_transform(tf.constant([4, 2], tf.int64), 33, 33, ranges).numpy()
    centre = np.array([16.0, 16.0, 1.0])
    mapped = params[:6].reshape(2, 3) @ centre
    np.testing.assert_allclose(mapped, [16.0, 16.0], atol=1e-3)
    assert abs(params[1]) > 1e-3  # a real rotation was drawn


# ------------------------------------------------------------- colour presets, flip switches

def _pixels(seed=5, size=24):
    rng = np.random.default_rng(seed)
    return tf.constant(rng.uniform(0.05, 0.95, (size, size, 3)), tf.float32)


def test_tefla_preset_is_teflas_distort_color():
    # tefla/da/preprocessor.py, InceptionPreprocessor.distort_color(fast_mode=False).
    tefla = augment.COLOR_JITTER_PRESETS["tefla"]
    assert tefla.brightness == 32.0 / 255.0 and tefla.hue == 0.2
    assert tefla.saturation == (0.5, 1.5) and tefla.contrast == (0.5, 1.5)
    assert tefla.orderings == (
        ("brightness", "saturation", "hue", "contrast"),
        ("saturation", "brightness", "contrast", "hue"),
        ("contrast", "hue", "brightness", "saturation"),
        ("hue", "saturation", "contrast", "brightness"))
    paper = augment.COLOR_JITTER_PRESETS["paper"]  # the three the paper names, no brightness
    assert paper.brightness == 0.0 and {op for o in paper.orderings for op in o} == {
        "saturation", "hue", "contrast"}
    assert augment.COLOR_JITTER_PRESETS["none"] is None


def _by_hand(image, seed, jitter, ordering):
    """The operations of ``ordering`` with the per-operation seeds random_color uses."""
    seeds = dict(zip(("brightness", "saturation", "hue", "contrast"),
                     tf.unstack(tf.random.experimental.stateless_split(seed, 4))))
    for op in ordering:
        if op == "brightness":
            image = tf.image.stateless_random_brightness(image, jitter.brightness, seeds[op])
        elif op == "saturation":
            image = tf.image.stateless_random_saturation(image, *jitter.saturation, seed=seeds[op])
        elif op == "hue":
            image = tf.image.stateless_random_hue(image, jitter.hue, seeds[op])
        else:
            image = tf.image.stateless_random_contrast(image, *jitter.contrast, seed=seeds[op])
    return tf.clip_by_value(image, 0.0, 1.0).numpy()


def test_mild_preset_draws_what_the_single_ordering_jitter_drew():
    # Same seed, same augmentation as before presets existed: runs stay comparable.
    image, seed = _pixels(), tf.constant([9, 4], tf.int64)
    mild = augment.COLOR_JITTER_PRESETS["mild"]
    expected = _by_hand(image, seed, mild, ("brightness", "saturation", "hue", "contrast"))
    np.testing.assert_array_equal(augment.random_color(image, seed, mild).numpy(), expected)


def test_tefla_preset_draws_one_of_its_four_orderings_per_image():
    image = _pixels()
    tefla = augment.COLOR_JITTER_PRESETS["tefla"]
    seen = set()
    for s in range(24):
        seed = tf.constant([s, 1], tf.int64)
        out = augment.random_color(image, seed, tefla).numpy()
        matches = [i for i, o in enumerate(tefla.orderings)
                   if np.allclose(out, _by_hand(image, seed, tefla, o), atol=1e-6)]
        assert matches, s  # always exactly one of TEFLA's orderings, with TEFLA's ranges
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_unknown_colour_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="color_jitter='strong'.*tefla"):
        DataConfig(color_jitter="strong").validate()


@pytest.mark.parametrize("left_right,up_down", [(True, False), (False, True), (False, False)])
def test_each_flip_has_its_own_switch(left_right, up_down):
    image = _pixels(size=16)
    seen = set()
    for s in range(16):
        out, _ = augment.random_geometry(
            image, None, tf.constant([s, 3], tf.int64), crop_size=16,
            flip_left_right=left_right, flip_up_down=up_down, random_pad=0)
        out = out.numpy()
        for name, flipped in (("none", image.numpy()), ("lr", image.numpy()[:, ::-1]),
                              ("ud", image.numpy()[::-1]), ("both", image.numpy()[::-1, ::-1])):
            if np.array_equal(out, flipped):
                seen.add(name)
    allowed = {"none"} | ({"lr"} if left_right else set()) | ({"ud"} if up_down else set()) \
        | ({"both"} if left_right and up_down else set())
    assert seen == allowed


def test_turning_one_flip_off_keeps_the_other_flips_draw():
    image = _pixels(size=16)
    for s in range(8):
        seed = tf.constant([s, 5], tf.int64)
        both, _ = augment.random_geometry(image, None, seed, crop_size=16, flip_left_right=True,
                                          flip_up_down=True, random_pad=0)
        lr_only, _ = augment.random_geometry(image, None, seed, crop_size=16,
                                             flip_left_right=True, flip_up_down=False,
                                             random_pad=0)
        # lr_only is "both" with any vertical flip undone.
        undone = both.numpy() if np.array_equal(lr_only.numpy(), both.numpy()) else \
            both.numpy()[::-1]
        np.testing.assert_array_equal(lr_only.numpy(), undone)
