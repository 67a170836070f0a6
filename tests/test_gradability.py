"""Gradability checks of coopseg-predict: measuring the retina and the thresholds."""
import os

import cv2
import numpy as np
import pytest

from coopseg.serving.photo_preprocessing import (CLIPPED_GREEN_LEVEL, MAX_CLIPPED_FRACTION,
                                                 MIN_MEAN_LUMINANCE, MIN_RETINA_SIDE_PER_INPUT,
                                                 PhotoPreprocessing, RetinaMeasure,
                                                 assess_gradability, gradability_reasons,
                                                 measure_retina)
from coopseg.serving.predict_folder import prepare_photo
from data_pipelines import fundus
from data_pipelines.synthetic import render_fundus


def _grey_disc(value, height=200, width=260, centre=(130, 100), radius=80):
    """A uniform grey disc (``value`` in every channel) on a black frame."""
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, centre, radius, (value, value, value), -1)
    return image


def _assess(image, input_size=96):
    return assess_gradability(image, fundus.crop_box_to_retina(image), input_size)


def _measure(mean=80.0, clipped=0.0, side=300, found=True):
    return RetinaMeasure(retina_found=found, side=side, mean_luminance=mean,
                         clipped_fraction=clipped)


# ---------------------------------------------------------------- thresholds at their edges

def test_too_dark_below_the_threshold_not_at_it():
    assert gradability_reasons(_measure(mean=MIN_MEAN_LUMINANCE), 96) == ()
    reasons = gradability_reasons(_measure(mean=MIN_MEAN_LUMINANCE - 0.01), 96)
    # Rounded down, so the text never claims "20.0 < 20".
    assert reasons == (f"too dark: retina mean brightness 19.9 < {MIN_MEAN_LUMINANCE:g}",)


def test_too_bright_above_the_clipped_fraction_not_at_it():
    assert gradability_reasons(_measure(clipped=MAX_CLIPPED_FRACTION), 96) == ()
    reasons = gradability_reasons(_measure(clipped=MAX_CLIPPED_FRACTION + 0.001), 96)
    assert reasons == ("too bright: 51% of the retina clipped > 50%",)


def test_too_small_below_the_model_input_not_at_it():
    side = int(MIN_RETINA_SIDE_PER_INPUT * 96)
    assert gradability_reasons(_measure(side=side), 96) == ()
    assert gradability_reasons(_measure(side=side - 1), 96) == (
        f"too small: retina {side - 1} px across < {side} px",)


def test_every_failed_check_is_listed_and_no_retina_names_the_photo():
    reasons = gradability_reasons(_measure(mean=3.0, side=40, found=False), 96)
    assert reasons == ("no retina found", "too dark: photo mean brightness 3.0 < 20",
                       "too small: photo 40 px across < 96 px")


# ---------------------------------------------------------------- measuring photos

def test_brightness_is_measured_inside_the_disc_at_the_threshold():
    at = _assess(_grey_disc(int(MIN_MEAN_LUMINANCE)))
    assert at.measure.retina_found and at.measure.mean_luminance == MIN_MEAN_LUMINANCE
    assert at.gradable and at.reason == ""
    below = _assess(_grey_disc(int(MIN_MEAN_LUMINANCE) - 1))
    assert below.measure.retina_found and not below.gradable
    assert below.reason.startswith("too dark: retina mean brightness 19.0")


def test_a_disc_cut_off_by_the_frame_is_measured_without_the_black_border():
    # EyePACS-style: the disc fills the frame's height. The box's corners are black:
    # averaged in, this retina (grey 22) would read as below 20.
    image = _grey_disc(22, height=100, width=200, centre=(100, 50), radius=70)
    box = fundus.crop_box_to_retina(image)
    y0, y1, x0, x1 = box
    assert image[y0:y1, x0:x1].mean() < MIN_MEAN_LUMINANCE
    measure = measure_retina(image, box)
    assert measure.mean_luminance == 22 and measure.side == x1 - x0 == 141


def test_disc_size_at_the_model_input_edge():
    image = _grey_disc(120, radius=48)  # 97 px across
    assert _assess(image).measure.side == 97
    assert _assess(image, input_size=97).gradable
    small = _assess(image, input_size=98)
    assert small.reason == "too small: retina 97 px across < 98 px"


def test_clipped_green_counts_only_at_the_ceiling():
    image = _grey_disc(100)
    image[:, :130, 1] = np.where(image[:, :130, 0] > 0, CLIPPED_GREEN_LEVEL, 0)  # left half
    left_half = _assess(image).measure.clipped_fraction
    assert 0.45 < left_half < 0.55
    image[:, :, 1] = np.where(image[:, :, 0] > 0, CLIPPED_GREEN_LEVEL - 1, 0)
    assert _assess(image).measure.clipped_fraction == 0.0
    white = np.full((120, 160, 3), 255, np.uint8)
    judged = _assess(white)
    assert judged.reason == ("no retina found; too bright: 100% of the photo clipped > 50%")


def test_large_photos_are_measured_on_a_strided_copy():
    image = _grey_disc(100, height=1200, width=1700, centre=(900, 600), radius=500)
    measure = _assess(image, input_size=224).measure
    assert measure.mean_luminance == 100 and 1001 <= measure.side <= 1001 + 16


def test_synthetic_fundus_is_gradable_and_darkened_is_too_dark():
    photo, _ = render_fundus(0, 2, 256)
    judged = _assess(photo)
    assert judged.gradable and judged.measure.mean_luminance > 3 * MIN_MEAN_LUMINANCE
    dark = _assess((photo * 0.2).astype(np.uint8))  # the disc still stands out from the border
    assert dark.measure.retina_found and dark.reasons[0].startswith("too dark")
    assert len(dark.reasons) == 1


# ---------------------------------------------------------------- retina_found in prepare_photo

@pytest.mark.parametrize("crop", [False, True])
def test_black_photo_has_no_retina_whatever_the_preprocessing(tmp_path, crop):
    path = os.path.join(str(tmp_path), "black.png")
    cv2.imwrite(path, np.zeros((150, 200, 3), np.uint8))
    photo = prepare_photo(path, 96, PhotoPreprocessing(crop_retina=crop))
    assert not photo.error and photo.model_input.shape == (96, 96, 3)
    assert not photo.retina_found and not photo.gradable
    assert photo.gradability.reasons[0] == "no retina found"
    assert photo.crop_missed == crop  # only a run that crops falls back to the whole frame

    fundus_path = os.path.join(str(tmp_path), "fundus.png")
    cv2.imwrite(fundus_path, render_fundus(1, 0, 128)[0][..., ::-1])
    photo = prepare_photo(fundus_path, 96, PhotoPreprocessing(crop_retina=crop))
    assert photo.retina_found and photo.gradable and not photo.crop_missed
