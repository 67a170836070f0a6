"""PNG figures for evaluation reports, drawn with OpenCV (no plotting library).

``line_chart`` (PR curves, ROC), ``confusion_heatmap`` and ``image_grid`` each return a
uint8 RGB array ``[H, W, 3]`` on white, which ``write_png`` saves and
``tf.summary.image`` logs as is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from coopseg.utils.atomic_write import write_bytes_atomically

Colour = Tuple[int, int, int]

# OpenCV draws on whatever channel order it is given: every colour and array here is
# RGB, and only write_png swaps to OpenCV's BGR, when encoding.
# Distinct line colours (RGB), readable on white.
LINE_COLOURS: Tuple[Colour, ...] = (
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
GRID: Colour = (225, 225, 225)
FONT = cv2.FONT_HERSHEY_SIMPLEX
# line_chart's plot box starts here (pixels from the left / top of the figure).
MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM = 70, 40, 55


@dataclass
class Curve:
    """One line: points ``(x[i], y[i])`` joined in order; ``dashed`` for references."""
    label: str
    x: Sequence[float]
    y: Sequence[float]
    colour: Optional[Colour] = None
    dashed: bool = False
    # Error bars: ± yerr[i] around y[i] (e.g. std over seeds); None = none.
    yerr: Optional[Sequence[float]] = None


@dataclass
class Marker:
    """A filled dot at ``(x, y)`` with its own legend entry (e.g. the operating point)."""
    label: str
    x: float
    y: float
    colour: Colour = BLACK


def _text_size(text: str, scale: float, thickness: int = 1) -> Tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    return width, height + baseline


def _put(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45,
         colour: Colour = BLACK, thickness: int = 1, anchor: str = "left") -> None:
    """Text with its baseline at ``y``; ``anchor`` left | centre | right on ``x``."""
    width, _ = _text_size(text, scale, thickness)
    x = {"left": x, "centre": x - width // 2, "right": x - width}[anchor]
    cv2.putText(canvas, text, (int(x), int(y)), FONT, scale, colour, thickness, cv2.LINE_AA)


def _vertical_text(text: str, scale: float = 0.45, colour: Colour = BLACK) -> np.ndarray:
    """``text`` rendered bottom-to-top (for a y-axis label or long column labels)."""
    width, height = _text_size(text, scale)
    patch = np.full((height + 4, width + 4, 3), 255, np.uint8)
    _put(patch, text, 2, height - 2, scale, colour)
    return np.ascontiguousarray(np.rot90(patch))


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    h = min(patch.shape[0], canvas.shape[0] - y)
    w = min(patch.shape[1], canvas.shape[1] - x)
    if h > 0 and w > 0:
        canvas[y:y + h, x:x + w] = patch[:h, :w]


def _dashed_polyline(canvas: np.ndarray, points: np.ndarray, colour: Colour, thickness: int,
                     dash: int = 8) -> None:
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        length = float(np.hypot(x1 - x0, y1 - y0))
        pieces = max(1, int(length // dash))
        for i in range(0, pieces, 2):
            a, b = i / pieces, min(1.0, (i + 1) / pieces)
            p = (int(round(x0 + a * (x1 - x0))), int(round(y0 + a * (y1 - y0))))
            q = (int(round(x0 + b * (x1 - x0))), int(round(y0 + b * (y1 - y0))))
            cv2.line(canvas, p, q, colour, thickness, cv2.LINE_AA)


class PlotArea:
    """Maps data coordinates in ``[x0, x1] x [y0, y1]`` to pixels of a plot box."""

    def __init__(self, left: int, top: int, width: int, height: int,
                 xlim: Tuple[float, float], ylim: Tuple[float, float]):
        self.left, self.top, self.width, self.height = left, top, width, height
        self.xlim, self.ylim = xlim, ylim

    def to_pixels(self, x, y) -> np.ndarray:
        """``[N, 2]`` int32 pixel coordinates (x right, y down) of data points."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        px = self.left + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * self.width
        py = self.top + (1.0 - (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])) * self.height
        return np.stack([np.round(px), np.round(py)], axis=-1).astype(np.int32).reshape(-1, 2)


def line_chart(curves: Sequence[Curve], title: str, xlabel: str, ylabel: str,
               markers: Sequence[Marker] = (), xlim: Tuple[float, float] = (0.0, 1.0),
               ylim: Tuple[float, float] = (0.0, 1.0), plot_size: Tuple[int, int] = (400, 400),
               ticks: int = 5,
               xticks: Optional[Sequence[Tuple[float, str]]] = None) -> np.ndarray:
    """Curves and markers in a ``plot_size`` (width, height) box; legend on the right.

    Used for PR curves and ROC: axes, ticks, grid, axis labels and title around the box;
    a ``Marker`` shows e.g. an operating point.

    ``xticks``: (position, label) pairs instead of ``ticks`` evenly spaced numbers (e.g.
    a log axis: positions log10(N), labels N).

    Points with a non-finite coordinate are dropped; a curve left with no point is
    listed in the legend only. Returns the figure as uint8 RGB.
    """
    legend = [(c.label, c.colour or LINE_COLOURS[i % len(LINE_COLOURS)], "line", c.dashed)
              for i, c in enumerate(curves)]
    legend += [(m.label, m.colour, "dot", False) for m in markers]
    legend_width = max([_text_size(text, 0.42)[0] for text, *_ in legend] + [0]) + 50
    margin_left, margin_top, margin_bottom = MARGIN_LEFT, MARGIN_TOP, MARGIN_BOTTOM
    width = margin_left + plot_size[0] + 20 + (legend_width if legend else 0)
    height = margin_top + plot_size[1] + margin_bottom
    canvas = np.full((height, width, 3), 255, np.uint8)
    area = PlotArea(margin_left, margin_top, plot_size[0], plot_size[1], xlim, ylim)

    # Grid and ticks.
    bottom = area.top + area.height
    x_ticks = (list(xticks) if xticks is not None else
               [(xlim[0] + (xlim[1] - xlim[0]) * i / ticks,
                 f"{xlim[0] + (xlim[1] - xlim[0]) * i / ticks:.1f}") for i in range(ticks + 1)])
    for fx, text in x_ticks:
        (gx, _), = area.to_pixels([fx], [ylim[0]])
        cv2.line(canvas, (gx, area.top), (gx, bottom), GRID, 1)
        cv2.line(canvas, (gx, bottom), (gx, bottom + 5), BLACK, 1)
        _put(canvas, text, gx, bottom + 20, 0.4, anchor="centre")
    for i in range(ticks + 1):
        fy = ylim[0] + (ylim[1] - ylim[0]) * i / ticks
        (_, gy), = area.to_pixels([xlim[0]], [fy])
        cv2.line(canvas, (area.left, gy), (area.left + area.width, gy), GRID, 1)
        cv2.line(canvas, (area.left - 5, gy), (area.left, gy), BLACK, 1)
        _put(canvas, f"{fy:.1f}", area.left - 8, gy + 5, 0.4, anchor="right")
    cv2.rectangle(canvas, (area.left, area.top), (area.left + area.width, area.top + area.height),
                  BLACK, 1)

    # Titles.
    _put(canvas, title, area.left + area.width // 2, 25, 0.55, anchor="centre", thickness=1)
    _put(canvas, xlabel, area.left + area.width // 2, area.top + area.height + 45, 0.45,
         anchor="centre")
    label = _vertical_text(ylabel)
    _paste(canvas, label, 8, area.top + area.height // 2 - label.shape[0] // 2)

    # Data: clip to the plot box so a point outside the limits cannot spill over axes.
    plot = canvas[area.top:area.top + area.height + 1, area.left:area.left + area.width + 1]
    offset = np.array([area.left, area.top], np.int32)
    for curve, (_, colour, _, dashed) in zip(curves, legend):
        x, y = np.asarray(curve.x, np.float64), np.asarray(curve.y, np.float64)
        keep = np.isfinite(x) & np.isfinite(y)
        points = area.to_pixels(x[keep], y[keep]) - offset
        if len(points) == 1:
            cv2.circle(plot, tuple(int(v) for v in points[0]), 2, colour, -1, cv2.LINE_AA)
        elif dashed:
            _dashed_polyline(plot, points, colour, 1)
        elif len(points) > 1:
            cv2.polylines(plot, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        if curve.yerr is not None:
            err = np.asarray(curve.yerr, np.float64)[keep]
            for xi, yi, ei in zip(x[keep], y[keep], err):
                if np.isfinite(ei) and ei > 0:
                    (bx, lo), (_, hi) = area.to_pixels([xi, xi], [yi - ei, yi + ei]) - offset
                    cv2.line(plot, (int(bx), int(lo)), (int(bx), int(hi)), colour, 1, cv2.LINE_AA)
                    for cap in (lo, hi):
                        cv2.line(plot, (int(bx) - 4, int(cap)), (int(bx) + 4, int(cap)), colour, 1)
    for marker in markers:
        if np.isfinite(marker.x) and np.isfinite(marker.y):
            (px, py), = area.to_pixels([marker.x], [marker.y]) - offset
            cv2.circle(plot, (int(px), int(py)), 6, marker.colour, -1, cv2.LINE_AA)
            cv2.circle(plot, (int(px), int(py)), 6, WHITE, 1, cv2.LINE_AA)

    # Legend, outside the plot so it never hides a curve.
    x0 = area.left + area.width + 20
    for i, (text, colour, kind, dashed) in enumerate(legend):
        y = area.top + 12 + 22 * i
        if kind == "dot":
            cv2.circle(canvas, (x0 + 14, y - 4), 5, colour, -1, cv2.LINE_AA)
        elif dashed:
            _dashed_polyline(canvas, np.array([[x0, y - 4], [x0 + 28, y - 4]]), colour, 1, dash=5)
        else:
            cv2.line(canvas, (x0, y - 4), (x0 + 28, y - 4), colour, 2, cv2.LINE_AA)
        _put(canvas, text, x0 + 36, y, 0.42)
    return canvas


def _compact(count: float) -> str:
    """12 -> "12", 12345 -> "12.3k", 4.5e6 -> "4.5M" (pixel counts fit a cell)."""
    count = float(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(count) >= limit:
            return f"{count / (limit if suffix != 'k' else 1e3):.1f}{suffix}"
    return f"{int(round(count))}"


def confusion_heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str],
                      title: str, xlabel: str = "predicted", ylabel: str = "true",
                      cell: int = 0) -> np.ndarray:
    """A confusion matrix as a heatmap: each cell shaded by its share of the row (the
    true class), its count written in it. Rows with no sample stay white."""
    matrix = np.asarray(matrix, np.float64)
    rows, cols = matrix.shape
    if len(row_labels) != rows or len(col_labels) != cols:
        raise ValueError(f"{len(row_labels)}x{len(col_labels)} labels for a {matrix.shape} matrix")
    texts = [[_compact(v) for v in row] for row in matrix]
    cell = cell or max(44, max(_text_size(t, 0.4)[0] for row in texts for t in row) + 10)
    row_label_width = max(_text_size(t, 0.45)[0] for t in row_labels) + 12
    vertical = any(_text_size(t, 0.45)[0] > cell - 4 for t in col_labels)
    col_label_height = (max(_text_size(t, 0.45)[0] for t in col_labels) + 8) if vertical else 22
    left = 30 + row_label_width
    top = 40 + col_label_height
    width = left + cols * cell + 20
    height = top + rows * cell + 40
    canvas = np.full((height, max(width, _text_size(title, 0.55)[0] + 20), 3), 255, np.uint8)

    totals = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, matrix / totals, 0.0)
    for i in range(rows):
        for j in range(cols):
            # White (share 0) to dark blue (share 1).
            colour = tuple(int(round(255 - share[i, j] * (255 - c))) for c in (8, 48, 107))
            x, y = left + j * cell, top + i * cell
            cv2.rectangle(canvas, (x, y), (x + cell, y + cell), colour, -1)
            cv2.rectangle(canvas, (x, y), (x + cell, y + cell), (170, 170, 170), 1)
            ink = WHITE if share[i, j] > 0.5 else BLACK
            _put(canvas, texts[i][j], x + cell // 2, y + cell // 2 + 5, 0.4, ink, anchor="centre")
    for i, text in enumerate(row_labels):
        _put(canvas, text, left - 6, top + i * cell + cell // 2 + 5, 0.45, anchor="right")
    for j, text in enumerate(col_labels):
        x = left + j * cell + cell // 2
        if vertical:
            patch = _vertical_text(text)
            _paste(canvas, patch, x - patch.shape[1] // 2, top - 4 - patch.shape[0])
        else:
            _put(canvas, text, x, top - 6, 0.45, anchor="centre")
    _put(canvas, title, canvas.shape[1] // 2, 22, 0.55, anchor="centre")
    _put(canvas, xlabel, left + cols * cell // 2, top + rows * cell + 28, 0.45, anchor="centre")
    label = _vertical_text(ylabel)
    _paste(canvas, label, 6, top + rows * cell // 2 - label.shape[0] // 2)
    return canvas


def image_grid(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str],
               column_titles: Sequence[str] = (), title: str = "", gap: int = 6) -> np.ndarray:
    """Panels (uint8 RGB, each row's panels one size) in rows, a caption line above each
    row, column titles at the top. Narrower rows are padded with white on the right."""
    if len(rows) != len(captions):
        raise ValueError(f"{len(rows)} rows but {len(captions)} captions")
    if not rows:
        raise ValueError("image_grid needs at least one row")
    caption_h, title_h = 20, (28 if title else 0)
    header_h = 22 if column_titles else 0
    row_widths = [sum(p.shape[1] for p in row) + gap * (len(row) - 1) for row in rows]
    width = max(row_widths + [_text_size(title, 0.55)[0]]
                + [_text_size(c, 0.42)[0] for c in captions]) + 2 * gap
    height = title_h + header_h + sum(caption_h + max(p.shape[0] for p in row) + gap
                                      for row in rows) + gap
    canvas = np.full((height, width, 3), 255, np.uint8)
    if title:
        _put(canvas, title, width // 2, 20, 0.55, anchor="centre")
    if column_titles:
        x = gap
        for text, panel in zip(column_titles, rows[0]):
            _put(canvas, text, x + panel.shape[1] // 2, title_h + 16, 0.45, anchor="centre")
            x += panel.shape[1] + gap
    y = title_h + header_h
    for row, caption in zip(rows, captions):
        _put(canvas, caption, gap, y + 15, 0.42)
        y += caption_h
        x = gap
        for panel in row:
            panel = np.asarray(panel)
            if panel.dtype != np.uint8 or panel.ndim != 3 or panel.shape[2] != 3:
                raise ValueError(f"grid panels must be uint8 RGB [H, W, 3], got "
                                 f"{panel.dtype} {panel.shape}")
            canvas[y:y + panel.shape[0], x:x + panel.shape[1]] = panel
            x += panel.shape[1] + gap
        y += max(p.shape[0] for p in row) + gap
    return canvas


def write_png(path: str, rgb: np.ndarray) -> str:
    """Save a uint8 RGB array as PNG at ``path`` (swapped to BGR for OpenCV only here,
    written atomically); returns ``path``."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_png needs uint8 RGB [H, W, 3], got {rgb.dtype} {rgb.shape}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OSError(f"cannot write {path}: directory {directory} does not exist")
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG")
    return write_bytes_atomically(path, encoded.tobytes())
