"""Tests for data_pipelines.fundus: retina crop, square padding, resizing, Graham."""
import cv2
import numpy as np

from data_pipelines import fundus


def _disc_image(height, width, centre, radius, noise=True, seed=0):
    """A retina-like disc on a black frame with sensor noise and a few bright specks."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, centre, radius, (180, 90, 40), -1)
    if noise:
        image = np.clip(image + rng.integers(0, 9, image.shape), 0, 255).astype(np.uint8)
        for _ in range(5):  # isolated hot pixels in the border
            y, x = rng.integers(0, 6), rng.integers(0, width)
            image[y, x] = 255
        image[height - 6:height - 2, 2:14] = 230  # a burnt-in label in a corner
    return image


def test_crop_box_finds_disc_despite_noise_and_labels():
    image = _disc_image(200, 300, centre=(150, 100), radius=80)
    y0, y1, x0, x1 = fundus.crop_box_to_retina(image)
    assert abs(y0 - 20) <= 3 and abs(y1 - 181) <= 3
    assert abs(x0 - 70) <= 3 and abs(x1 - 231) <= 3


def test_crop_box_with_a_gray_noisy_border():
    rng = np.random.default_rng(2)
    image = rng.integers(5, 30, (200, 300, 3)).astype(np.uint8)  # border level ~17
    cv2.circle(image, (150, 100), 80, (180, 90, 40), -1)
    y0, y1, x0, x1 = fundus.crop_box_to_retina(image)
    assert abs(y0 - 20) <= 3 and abs(y1 - 181) <= 3
    assert abs(x0 - 70) <= 3 and abs(x1 - 231) <= 3


def test_crop_box_on_large_image_never_cuts_the_disc():
    # Large photos are searched at reduced resolution; the box must still hold the disc.
    image = _disc_image(1200, 1700, centre=(900, 600), radius=500, noise=False)
    y0, y1, x0, x1 = fundus.crop_box_to_retina(image)
    assert y0 <= 100 and y1 >= 1101 and x0 <= 400 and x1 >= 1401
    assert y0 >= 100 - 8 and y1 <= 1101 + 8 and x0 >= 400 - 8 and x1 <= 1401 + 8


def test_crop_to_retina_pads_a_cut_disc_to_a_centred_square():
    # EyePACS-style: the disc is cut off at top and bottom by the frame.
    image = _disc_image(100, 200, centre=(100, 50), radius=70, noise=False)
    out = fundus.crop_to_retina(image)
    assert out.shape == (141, 141, 3)
    rows_with_retina = np.flatnonzero(out.max(axis=(1, 2)) > 0)
    top_pad, bottom_pad = rows_with_retina[0], 140 - rows_with_retina[-1]
    assert top_pad == 20 and bottom_pad == 21  # 41 padding rows split around the content
    np.testing.assert_array_equal(out[top_pad:top_pad + 100], image[:, 30:171])


def test_already_tight_image_is_kept_whole():
    image = _disc_image(120, 120, centre=(60, 60), radius=60, noise=False)
    assert fundus.crop_box_to_retina(image) == (0, 120, 0, 120)
    np.testing.assert_array_equal(fundus.crop_to_retina(image), image)


def test_black_image_has_no_retina_and_is_returned_unchanged():
    black = np.random.default_rng(1).integers(0, 6, (80, 100, 3)).astype(np.uint8)
    assert fundus.crop_box_to_retina(black) is None
    assert fundus.crop_to_retina(black) is black


def test_apply_box_crops_and_pads_mask_with_given_value():
    mask = np.zeros((50, 80), np.uint8)
    mask[10:40, 20:60] = 3
    out = fundus.apply_box(mask, (10, 40, 20, 60), pad_value=255)
    assert out.shape == (40, 40)
    assert (out[:5] == 255).all() and (out[35:] == 255).all()
    assert (out[5:35] == 3).all()


def test_resize_mask_keeps_only_existing_values():
    mask = np.zeros((37, 37), np.uint8)
    mask[5:20, 5:20] = 4
    mask[25:, :] = 255
    out = fundus.resize_mask(mask, 16)
    assert out.shape == (16, 16)
    assert set(np.unique(out)) == {0, 4, 255}
    assert fundus.resize_square(np.zeros((37, 37, 3), np.uint8), 16).shape == (16, 16, 3)


def test_graham_normalize_range_and_gray_outside_disc():
    image = _disc_image(128, 128, centre=(64, 64), radius=64, noise=False)
    cv2.circle(image, (64, 64), 8, (255, 255, 255), -1)  # a bright spot: strong local contrast
    out = fundus.graham_normalize(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    yy, xx = np.mgrid[:128, :128]
    radius = np.hypot(yy - 64, xx - 64)
    assert (out[radius > 0.9 * 64 + 1] == 128).all()
    # Flat regions map to ~128; the spot's edge saturates at both ends.
    assert abs(int(out[64, 30, 0]) - 128) <= 2
    assert out.min() == 0 and out.max() == 255


def test_graham_normalize_scale_sets_the_gray_circle():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:, ::4] = 200  # stripes: local contrast everywhere
    out = fundus.graham_normalize(image, scale=30)
    yy, xx = np.mgrid[:100, :100]
    radius = np.hypot(yy - 50, xx - 50)
    assert (out[radius > 28] == 128).all()
    assert (out[radius < 26] != 128).any()


def test_prepare_fundus_crops_image_and_mask_alike_and_pads_mask_with_ignore():
    image = _disc_image(100, 200, centre=(100, 50), radius=70, noise=False)
    mask = np.zeros((100, 200), np.uint8)
    mask[45:55, 95:105] = 2  # a lesion at the disc centre
    out, out_mask, found = fundus.prepare_fundus(image, mask, 47)
    assert found and out.shape == (47, 47, 3) and out_mask.shape == (47, 47)
    assert out_mask[23, 23] == 2 and out_mask[0, 23] == 255 and out_mask[23, 0] == 0
    assert out[0, 23].max() == 0 and out[23, 23].max() > 0
    black = np.zeros((30, 40, 3), np.uint8)
    out, no_mask, found = fundus.prepare_fundus(black, None, 16, graham=True)
    assert not found and no_mask is None and out.shape == (16, 16, 3)
