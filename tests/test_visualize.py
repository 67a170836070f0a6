"""Lesion overlays and legends drawn for coopseg-predict and the evaluation report."""
import numpy as np

from coopseg.evaluation.visualize import (LEGEND_WARNING_BAND, LEGEND_WARNING_WIDTH, add_legend,
                                          overlay_rgb, palette)


def test_overlay_colours_lesions_only_and_scales_the_map_nearest():
    image = np.full((8, 8, 3), 100, np.uint8)
    class_map = np.zeros((4, 4), np.int32)
    class_map[0, 0] = 3          # one lesion pixel -> a 2x2 block on the 8 px image
    class_map[3, 3] = 255        # ignore label: never coloured
    out = overlay_rgb(image, class_map, num_classes=7, alpha=0.5)
    want = np.round(0.5 * 100 + 0.5 * palette(7)[3].astype(float))
    np.testing.assert_allclose(out[:2, :2].reshape(-1, 3), np.tile(want, (4, 1)), atol=1)
    assert (out[2:, :] == 100).all() and (out[:, 2:] == 100).all()
    assert out.dtype == np.uint8 and out.shape == image.shape


def test_legend_panel_sits_right_of_the_image_and_grows_with_entries():
    image = np.zeros((60, 50, 3), np.uint8)
    few = add_legend(image, [("a", 1)], 3, title="t")
    many = add_legend(image, [(f"class {i}", i % 3) for i in range(10)], 3, title="t")
    assert few.shape[0] == 60 and few.shape[1] > 50
    np.testing.assert_array_equal(few[:, :50], image)
    assert many.shape[0] > 60  # taller than the image: the legend does not get cut
    swatch = many[8 + 2 * 20 + 8, 50 + 8 + 7]  # "class 1" row (after title, class 0)
    np.testing.assert_array_equal(swatch, palette(3)[1])


def test_warnings_sit_under_the_title_in_red_and_wrap():
    image = np.zeros((60, 50, 3), np.uint8)
    plain = add_legend(image, [("a", 1)], 3, title="t")
    warned = add_legend(image, [("a", 1)], 3, title="t",
                        warnings=["UNGRADABLE photo:", "- " + "too dark " * 12])
    # The long warning wraps at LEGEND_WARNING_WIDTH instead of widening the panel.
    assert warned.shape[1] - 50 <= LEGEND_WARNING_WIDTH + 40
    panel = warned[:, 50:]
    band_rows = np.flatnonzero((panel == LEGEND_WARNING_BAND).all(-1).any(1))
    # Rows 1.. of the legend (after the title) are warnings: at least three lines.
    assert band_rows[0] <= 8 + 20 and band_rows[-1] - band_rows[0] >= 3 * 20 - 4
    text = panel[band_rows[0]:band_rows[-1] + 1]
    dark_red = (text[..., 0].astype(int) - text[..., 1] > 40) & (text[..., 1] < 150)
    assert dark_red.sum() > 50  # the warning text is drawn in red
    # The class rows move down past the warnings; no band without warnings.
    swatch_y = band_rows[-1] + 1 + 8
    np.testing.assert_array_equal(warned[swatch_y, 50 + 8 + 7], palette(3)[1])
    assert not (plain == LEGEND_WARNING_BAND).all(-1).any()
