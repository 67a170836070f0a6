"""How a healthy synthetic retina looks: fundus, optic disc, macula, vessels, optics.

``data_pipelines.synthetic_lesions`` draws the lesions on top and
``data_pipelines.synthetic`` puts the two together for a DR grade. Images are float32
RGB planes in [0, 255] while drawing; sizes are given for a 256 px image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

SUPERSAMPLE = 2  # vessels and streaks are drawn at 2x and area-downsampled: sub-pixel widths
SHIFT = 2  # cv2 fixed-point bits: quarter-pixel line end points

# Multiplicative tints of the local retina colour (R, G, B): blood absorbs green and
# blue far more than red, so vessels and bleeds are darker *and* redder.
VEIN_TINT = (0.55, 0.33, 0.45)
ARTERY_TINT = (0.74, 0.5, 0.6)


@dataclass
class Retina:
    """A fundus image being drawn, plus the geometry lesion placement needs."""

    # 3xHxW float32 RGB planes: per-channel broadcasting over a contiguous last axis is
    # several times faster than over HxWx3 (measured), and images are drawn pixel-wise.
    image: np.ndarray
    illumination: np.ndarray  # HxW float32: vignetting; lit lesion colours follow it
    fov_alpha: np.ndarray  # HxW float32 in [0, 1]: the camera's circular field of view
    center: Tuple[float, float]
    radius: float
    disc_center: Tuple[float, float]
    disc_radius: float
    macula_center: Tuple[float, float]
    # image_size / 256: every size is given for a 256 px image and multiplied by this,
    # so a larger image shows the same anatomy rather than relatively smaller lesions.
    scale: float

    @property
    def size(self) -> int:
        return self.image.shape[1]


def fixed_point(points: np.ndarray) -> np.ndarray:
    """(x, y) image coordinates -> cv2 fixed-point coordinates on the supersampled canvas.

    Pixel centres sit at integers on both canvases, so 1x pixel i spans 2x pixels 2i and
    2i + 1, whose midpoint is 2i + 0.5.
    """
    return ((points * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2) * (1 << SHIFT)).astype(np.int32)


def smooth_noise(rng: np.random.Generator, size: int, cells: int, sigma: float) -> np.ndarray:
    """Low-frequency texture: a ``cells``x``cells`` random grid upsampled smoothly."""
    grid = rng.normal(0.0, sigma, (cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _sigmoid_edge(distance: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (distance < 1), 0 outside, with a smooth rim ``softness`` wide."""
    return 0.5 - 0.5 * np.tanh((distance - 1.0) / (2.0 * softness))


def _local(image: np.ndarray, center: Tuple[float, float], half: float):
    """A view of 3xHxW ``image`` around ``center`` and the pixel offsets (dx, dy) from it."""
    size = image.shape[1]
    x0, x1 = max(0, int(center[0] - half)), min(size, int(center[0] + half) + 2)
    y0, y1 = max(0, int(center[1] - half)), min(size, int(center[1] + half) + 2)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(center[0])
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(center[1])
    return image[:, y0:y1, x0:x1], dx, dy


def draw_retina(rng: np.random.Generator, size: int, right_eye: bool) -> Retina:
    """Black surround, orange-red disc with vignetting, macula and optic disc (no vessels)."""
    scale = size / 256.0
    cx, cy = size / 2 + rng.normal(0, 0.01 * size, 2)
    radius = size * rng.uniform(0.44, 0.48)
    axis = np.arange(size, dtype=np.float32)
    dx2, dy2 = (axis[None, :] - np.float32(cx)) ** 2, (axis[:, None] - np.float32(cy)) ** 2
    fov_alpha = np.clip(radius + 0.5 - np.sqrt(dx2 + dy2), 0.0, 1.0)

    # Illumination falls off towards the rim, its centre a little off the optical axis.
    ix, iy = rng.normal([cx, cy], 0.08 * radius).astype(np.float32)
    falloff = np.float32(rng.uniform(0.35, 0.55) / radius ** 2)
    illum = 1.0 - falloff * ((axis[None, :] - ix) ** 2 + (axis[:, None] - iy) ** 2)
    illum = np.clip(illum, 0.25, 1.0) * (1.0 + smooth_noise(rng, size, 5, 0.05))
    base = np.array([205.0, 82.0, 34.0]) * rng.uniform(0.85, 1.08)
    base *= rng.uniform([0.95, 0.8, 0.7], [1.05, 1.2, 1.3])  # per-image pigmentation
    texture = 1.0 + smooth_noise(rng, size, max(8, int(28 * scale)), 0.025)  # choroid
    image = (illum * texture)[None] * base.astype(np.float32)[:, None, None]

    # Optic disc on the nasal side: the right of the image for a right eye.
    side = 1.0 if right_eye else -1.0
    disc = (cx + side * radius * rng.uniform(0.36, 0.44), cy + radius * rng.uniform(-0.1, 0.05))
    macula = (cx - side * radius * rng.uniform(0.0, 0.08), cy + radius * rng.uniform(-0.03, 0.06))
    disc_radius = radius * rng.uniform(0.12, 0.15)

    # Macula: a darker, browner region with a darker fovea at its centre.
    sigma = 0.18 * radius
    region, dx, dy = _local(image, macula, 3.5 * sigma)
    d2 = dx ** 2 + dy ** 2
    shade = rng.uniform(0.25, 0.4) * np.exp(-d2 / (2 * sigma ** 2))
    shade += 0.12 * np.exp(-d2 / (2 * (0.03 * radius) ** 2))
    region *= 1.0 - shade[None] * np.float32([1.0, 0.85, 0.7])[:, None, None]

    # Optic disc: pale yellow-orange with a soft rim and a whiter cup.
    region, dx, dy = _local(image, disc, 1.6 * disc_radius)
    aspect = rng.uniform(1.0, 1.12)  # discs are slightly taller than wide
    ell = np.sqrt((dx / disc_radius) ** 2 + (dy / (disc_radius * aspect)) ** 2)
    disc_colour = np.float32([248, 196, 112])[:, None, None] * np.float32(rng.uniform(0.9, 1.05))
    region += _sigmoid_edge(ell, 0.08)[None] * (disc_colour - region)
    cup = 0.7 * _sigmoid_edge(ell / rng.uniform(0.35, 0.5), 0.2)
    region += cup[None] * (np.float32([255, 236, 190])[:, None, None] - region)
    return Retina(image, illum.astype(np.float32), fov_alpha, (cx, cy), radius,
                  disc, disc_radius, macula, scale)


# ---------------------------------------------------------------- vessels


def _walk(rng, strokes, retina, x, y, angle, width, curvature, max_turn, depth,
          step=2.0, jitter=0.035, taper=0.992, branch_prob=0.03, min_width=0.45):
    """One vessel: a random walk from (x, y) that tapers, bends and branches recursively.

    Vectorised per vessel (cumulative sums of the turns); the polyline pieces go into
    ``strokes`` ((line thickness, value) -> list of point arrays) and are drawn in one
    cv2 call per style. The walk ends when the vessel is too thin, leaves the field of view,
    or reaches the avascular centre of the fovea.
    """
    step *= retina.scale
    n = int(3 * retina.radius / step)
    turns = rng.normal(0.0, jitter, n)
    if curvature:
        turns[:int(max_turn / abs(curvature * step))] += curvature * step
    angles = angle + np.cumsum(turns)
    xs = x + np.cumsum(step * np.cos(angles))
    ys = y + np.cumsum(step * np.sin(angles))
    branches = (rng.random(n) < branch_prob) if depth < 4 else np.zeros(n, bool)
    # A parent narrows (x0.92) after each branch it gives off.
    widths = width * taper ** np.arange(n) * 0.92 ** (np.cumsum(branches) - branches)
    (cx, cy), (mx, my) = retina.center, retina.macula_center
    alive = ((widths >= min_width * retina.scale)
             & ((xs - cx) ** 2 + (ys - cy) ** 2 < (0.99 * retina.radius) ** 2)
             & ((xs - mx) ** 2 + (ys - my) ** 2 > (0.07 * retina.radius) ** 2))
    end = n if alive.all() else int(alive.argmin())
    if end == 0:
        return
    points = np.empty((end + 1, 2), np.float64)
    points[0] = x, y
    points[1:, 0], points[1:, 1] = xs[:end], ys[:end]
    points = fixed_point(points)
    # A vessel thinner than one canvas pixel is drawn 1 px wide but proportionally
    # fainter, so small images do not show capillaries as bold as at 256 px.
    canvas_width = widths[:end] * SUPERSAMPLE
    thickness = np.maximum(1, np.rint(canvas_width)).astype(int)
    value = 255 - 32 * np.rint(7 * (1.0 - np.minimum(canvas_width, 1.0))).astype(int)
    style = list(zip(thickness.tolist(), value.tolist()))
    a = 0
    for b in range(1, end + 1):  # one polyline per run of constant thickness and value
        if b == end or style[b] != style[a]:
            strokes.setdefault(style[a], []).append(points[a:b + 1])
            a = b
    for k in np.flatnonzero(branches[:end]).tolist():
        side = 1.0 if rng.random() < 0.5 else -1.0
        _walk(rng, strokes, retina, xs[k], ys[k], angles[k] + side * rng.uniform(0.4, 1.0),
              widths[k] * rng.uniform(0.5, 0.8), rng.normal(0.0, 0.004) / retina.scale, 1.0,
              depth + 1, step=step / retina.scale, jitter=jitter * 1.3, taper=taper,
              branch_prob=branch_prob, min_width=min_width)


def draw_vessels(rng: np.random.Generator, retina: Retina, neovascular: bool = False) -> None:
    """Arteries and veins leaving the optic disc in four arcades, plus small macular twigs.

    The temporal arcades leave the disc steeply and bend around the macula, as in a
    real fundus. ``neovascular`` (grade 4, proliferative DR) adds a tuft of fine,
    tortuous new vessels on and around the disc.
    """
    veins, arteries = {}, {}
    dx, dy = retina.disc_center
    temporal = 1.0 if retina.macula_center[0] > dx else -1.0
    arc_curvature = 1.0 / (0.5 * retina.radius)
    for vertical in (-1.0, 1.0):
        turn = -vertical * temporal  # rotate from vertical towards the macula side
        for strokes, width, offset in ((veins, 3.2, 0.1), (arteries, 2.4, -0.1)):
            start = math.atan2(vertical, temporal * 0.18) + offset * turn
            _walk(rng, strokes, retina, dx, dy, start + rng.normal(0, 0.08),
                  width * rng.uniform(0.9, 1.1) * retina.scale,
                  turn * arc_curvature * rng.uniform(0.85, 1.15), rng.uniform(1.4, 1.65), 0,
                  jitter=0.025)
            start = math.atan2(vertical, -temporal * 0.7) + rng.normal(0, 0.15)
            _walk(rng, strokes, retina, dx, dy, start, 0.7 * width * retina.scale,
                  -turn * arc_curvature * 0.3, 0.6, 1)
    for _ in range(int(rng.integers(2, 5))):  # thin twigs towards the macula and nasally
        strokes = veins if rng.random() < 0.5 else arteries
        start = (0.0 if rng.random() < 0.7 else math.pi) + rng.normal(0, 0.35)
        angle = start if temporal > 0 else math.pi - start
        _walk(rng, strokes, retina, dx, dy, angle, rng.uniform(0.9, 1.4) * retina.scale,
              0.0, 0.0, 2, jitter=0.08)
    if neovascular:
        for _ in range(int(rng.integers(6, 12))):
            a = rng.uniform(0, 2 * math.pi)
            r = retina.disc_radius * rng.uniform(0.3, 1.3)
            _walk(rng, arteries, retina, dx + r * math.cos(a), dy + r * math.sin(a),
                  rng.uniform(0, 2 * math.pi), 0.75 * retina.scale, 0.0, 0.0, 4,
                  step=1.0, jitter=0.5, taper=0.985, min_width=0.35)
    big = retina.size * SUPERSAMPLE
    for strokes, tint in ((arteries, ARTERY_TINT), (veins, VEIN_TINT)):
        layer = np.zeros((big, big), np.uint8)
        for (thickness, value), lines in strokes.items():
            cv2.polylines(layer, lines, False, value, thickness, cv2.LINE_AA, SHIFT)
        alpha = cv2.resize(layer, (retina.size,) * 2, interpolation=cv2.INTER_AREA)
        darkening = (1.0 - np.float32(tint)) / np.float32(255)
        retina.image *= 1.0 - alpha.astype(np.float32)[None] * darkening[:, None, None]


# ---------------------------------------------------------------- finishing


def finish(rng: np.random.Generator, retina: Retina) -> np.ndarray:
    """Optics blur, sensor noise and the black surround; returns uint8 RGB."""
    sigma = rng.uniform(0.45, 0.75) * retina.scale
    image = cv2.merge(list(retina.image * retina.fov_alpha[None]))  # -> HxWx3
    image = cv2.GaussianBlur(image, (0, 0), sigma)
    # Uniform +-amplitude noise: as good as Gaussian after JPEG, and 5x cheaper to draw.
    amplitude = int(rng.integers(3, 7))
    image += rng.integers(0, 2 * amplitude + 1, image.shape, dtype=np.uint8)
    image -= np.float32(amplitude - 0.5)  # centre the noise; +0.5 rounds below
    return np.clip(image, 0, 255).astype(np.uint8)
