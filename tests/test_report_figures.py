"""OpenCV report figures: shapes, where curves land, PNG round trip."""
import cv2
import numpy as np
import pytest

from coopseg.evaluation import figures as rf

RED = (214, 39, 40)
GREEN = (0, 160, 0)


def _near(pixel, colour, tol=60):
    return int(np.abs(pixel.astype(int) - np.array(colour)).sum()) <= tol


def test_diagonal_roc_colours_the_diagonal_only():
    size = (300, 200)
    fig = rf.line_chart([rf.Curve("diagonal", [0, 1], [0, 1], colour=RED)], "ROC", "fpr", "tpr",
                        markers=[rf.Marker("point", 0.25, 0.75, colour=GREEN)], plot_size=size)
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
    assert fig.shape[0] == rf.MARGIN_TOP + size[1] + rf.MARGIN_BOTTOM
    assert fig.shape[1] > rf.MARGIN_LEFT + size[0]  # plus the legend
    area = rf.PlotArea(rf.MARGIN_LEFT, rf.MARGIN_TOP, size[0], size[1], (0, 1), (0, 1))
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        (x, y), = area.to_pixels([t], [t])
        assert _near(fig[y, x], RED), (t, fig[y, x])
        (x, y), = area.to_pixels([t], [1 - t])  # the anti-diagonal is not drawn on
        if abs(t - 0.5) > 0.1:
            assert not _near(fig[y, x], RED), (t, fig[y, x])
    (x, y), = area.to_pixels([0.25], [0.75])
    assert _near(fig[y, x], GREEN)
    # Axis box corners are black; the legend repeats the curve colour right of the plot.
    assert (fig[rf.MARGIN_TOP, rf.MARGIN_LEFT] < 60).all()
    legend = fig[:, rf.MARGIN_LEFT + size[0] + 5:]
    assert any(_near(p, RED, 10) for p in legend.reshape(-1, 3))


def test_non_finite_and_empty_curves_are_skipped():
    blue, orange, purple = (31, 119, 180), (255, 127, 14), (148, 103, 189)
    size = (300, 300)
    curves = [
        # Kept: (0.2, 0.2), (0.8, 0.8). Dropped: (nan, 0.5) between them, (0.5, inf) after.
        rf.Curve("with nan", [0.2, np.nan, 0.8, 0.5], [0.2, 0.5, 0.8, np.inf], colour=RED),
        rf.Curve("one finite point", [0.3, 0.6], [0.7, -np.inf], colour=GREEN),
        rf.Curve("empty", [], [], colour=blue),
        rf.Curve("all non-finite", [np.nan, np.inf], [0.5, 0.5], colour=orange),
    ]
    fig = rf.line_chart(curves, "t", "x", "y", plot_size=size)

    def anywhere(region, colour, tol=10):  # _near over a whole region, vectorised
        return bool((np.abs(region.astype(int) - np.array(colour)).sum(-1) <= tol).any())

    assert fig.dtype == np.uint8 and fig.shape[0] == rf.MARGIN_TOP + size[1] + rf.MARGIN_BOTTOM
    area = rf.PlotArea(rf.MARGIN_LEFT, rf.MARGIN_TOP, size[0], size[1], (0, 1), (0, 1))

    def at(x, y):
        (px, py), = area.to_pixels([x], [y])
        return fig[py, px]

    # The two finite points are joined directly: the whole segment between them is
    # drawn, which it would not be if the NaN point were kept as a vertex (or if the
    # curve were cut there).
    for t in (0.2, 0.35, 0.5, 0.65, 0.8):
        assert _near(at(t, t), RED), (t, at(t, t))
    # Nothing runs towards the dropped points: a kept (nan, 0.5) would pull a line left
    # of (0.2, 0.2), a kept (0.5, inf) one up from (0.8, 0.8); and the line ends at the
    # kept points.
    for x, y in ((0.1, 0.2), (0.05, 0.2), (0.8, 0.9), (0.75, 0.95), (0.1, 0.1), (0.9, 0.9)):
        assert not _near(at(x, y), RED), (x, y, at(x, y))
    # A curve left with one finite point is that point, drawn as a dot.
    assert _near(at(0.3, 0.7), GREEN)
    assert not _near(at(0.3, 0.6), GREEN) and not _near(at(0.4, 0.7), GREEN)
    # Curves left with no point are in the legend only: their colour is nowhere in the
    # plot box, but its legend sample is right of it.
    plot = fig[area.top:area.top + size[1] + 1, area.left:area.left + size[0] + 1]
    legend = fig[:, area.left + size[0] + 5:]
    for colour in (blue, orange):
        assert not anywhere(plot, colour), colour
        assert anywhere(legend, colour), colour
    # Every curve gets a legend entry, however many points it kept.
    assert anywhere(legend, RED) and anywhere(legend, GREEN)
    # A control for the colour search: purple was never given to a curve.
    assert not anywhere(fig, purple)


def test_confusion_heatmap_shades_by_row_and_checks_labels():
    dark = (8, 48, 107)
    diagonal = rf.confusion_heatmap(np.diag([5, 7, 9]), ["0", "1", "2"], ["0", "1", "2"], "cm")
    empty = rf.confusion_heatmap(np.zeros((3, 3)), ["0", "1", "2"], ["0", "1", "2"], "cm")
    count_dark = lambda img: int((np.abs(img.astype(int) - dark).sum(-1) < 10).sum())  # noqa: E731
    assert count_dark(diagonal) > 3 * 30 * 30   # three full-share cells
    assert count_dark(empty) == 0
    long_names = ["background", "haemorrhage", "microaneurysm"]
    fig = rf.confusion_heatmap(np.arange(9).reshape(3, 3) * 10 ** 6, long_names, long_names, "px")
    assert fig.dtype == np.uint8 and fig.shape[0] > 150  # vertical column labels
    with pytest.raises(ValueError, match="labels"):
        rf.confusion_heatmap(np.eye(3), ["a", "b"], ["a", "b", "c"], "bad")


def test_image_grid_places_every_panel():
    blue = np.zeros((20, 30, 3), np.uint8)
    blue[..., 2] = 255
    grid = rf.image_grid([[blue, blue, blue], [blue, blue, blue]], ["worst", "best"],
                         ["image", "truth", "prediction"], title="grid")
    assert grid.dtype == np.uint8
    assert int(np.all(grid == (0, 0, 255), axis=-1).sum()) == 6 * 20 * 30
    with pytest.raises(ValueError, match="uint8 RGB"):
        rf.image_grid([[blue.astype(np.float32)]], ["x"])
    with pytest.raises(ValueError, match="captions"):
        rf.image_grid([[blue]], [])


def test_write_png_round_trips_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = rf.write_png(str(tmp_path / "x.png"), rgb)
    back = cv2.imread(path, cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(back[..., ::-1], rgb)
    with pytest.raises(OSError, match="does not exist"):
        rf.write_png(str(tmp_path / "missing" / "x.png"), rgb)
    with pytest.raises(ValueError, match="uint8 RGB"):
        rf.write_png(str(tmp_path / "y.png"), rgb[..., 0])
