"""How a synthetic retina and each lesion look: the drawing primitives (DESIGN §3).

``data_pipelines.synthetic`` decides *what* to draw for a DR grade; this module only
knows *how*. Images are float32 RGB planes in [0, 255] while drawing. Sizes are given for a
256 px image and scaled by ``image_size / 256``, so a larger image shows the same
anatomy rather than relatively smaller lesions.

A lesion is a patch of blending weights (alpha): the image moves towards the lesion's
colour by alpha, and the lesion's mask is where alpha >= ``VISIBLE_ALPHA``. So a mask
is exactly the set of pixels where that lesion can be seen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

VISIBLE_ALPHA = 0.25
_SUPERSAMPLE = 2  # vessels and streaks are drawn at 2x and area-downsampled: sub-pixel widths
_SHIFT = 2  # cv2 fixed-point bits: quarter-pixel line end points

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
    scale: float  # image_size / 256

    @property
    def size(self) -> int:
        return self.image.shape[1]


def _fixed_point(points: np.ndarray) -> np.ndarray:
    """(x, y) image coordinates -> cv2 fixed-point coordinates on the supersampled canvas.

    Pixel centres sit at integers on both canvases, so 1x pixel i spans 2x pixels 2i and
    2i + 1, whose midpoint is 2i + 0.5.
    """
    return ((points * _SUPERSAMPLE + (_SUPERSAMPLE - 1) / 2) * (1 << _SHIFT)).astype(np.int32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, sigma: float) -> np.ndarray:
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
    illum = np.clip(illum, 0.25, 1.0) * (1.0 + _smooth_noise(rng, size, 5, 0.05))
    base = np.array([205.0, 82.0, 34.0]) * rng.uniform(0.85, 1.08)
    base *= rng.uniform([0.95, 0.8, 0.7], [1.05, 1.2, 1.3])  # per-image pigmentation
    texture = 1.0 + _smooth_noise(rng, size, max(8, int(28 * scale)), 0.025)  # choroid
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
    points = _fixed_point(points)
    # A vessel thinner than one canvas pixel is drawn 1 px wide but proportionally
    # fainter, so small images do not show capillaries as bold as at 256 px.
    canvas_width = widths[:end] * _SUPERSAMPLE
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
    big = retina.size * _SUPERSAMPLE
    for strokes, tint in ((arteries, ARTERY_TINT), (veins, VEIN_TINT)):
        layer = np.zeros((big, big), np.uint8)
        for (thickness, value), lines in strokes.items():
            cv2.polylines(layer, lines, False, value, thickness, cv2.LINE_AA, _SHIFT)
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


# ---------------------------------------------------------------- lesions
# Every lesion function draws one lesion centred at (x, y) into ``retina.image`` and
# ORs its visible pixels into ``mask`` (HxW bool).

MICROANEURYSM_TINT = (0.55, 0.26, 0.3)
HAEMORRHAGE_TINT = (0.42, 0.17, 0.2)
HARD_EXUDATE_COLOUR = (255, 226, 88)  # saturated yellow, sharp-edged
SOFT_EXUDATE_COLOUR = (236, 222, 196)  # pale, whitish, fuzzy
DRUSEN_COLOUR = (240, 222, 160)  # yellow-white, round, dome-shaped
DUST_COLOUR = (72, 70, 68)  # a shadow on the lens: grey, not lit by the retina
REFLECTION_COLOUR = (226, 234, 252)  # light reflected off the cornea / lens


def sample_site(rng: np.random.Generator, retina: Retina, around: str = "", spread: float = 0.4
                ) -> Tuple[float, float]:
    """A lesion centre inside the field of view and off the optic disc.

    ``around`` is "macula", "disc" or "" (uniform over the retina); ``spread`` is the
    standard deviation of the offset from that centre, as a fraction of the FOV radius.
    """
    cx, cy = retina.center
    for _ in range(100):
        if around:
            ox, oy = retina.macula_center if around == "macula" else retina.disc_center
            x, y = rng.normal([ox, oy], spread * retina.radius)
        else:
            r, a = retina.radius * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
            x, y = cx + r * math.cos(a), cy + r * math.sin(a)
        inside = math.hypot(x - cx, y - cy) < 0.9 * retina.radius
        off_disc = math.hypot(x - retina.disc_center[0], y - retina.disc_center[1]) \
            > 1.4 * retina.disc_radius
        if inside and off_disc:
            return float(x), float(y)
    return retina.macula_center  # only reached for absurd spreads; the macula is always valid


def _patch(x: float, y: float, half: int):
    """Pixel offsets from (x, y) over a (2*half+1)^2 patch, and the patch's top-left."""
    x0, y0 = int(round(x)) - half, int(round(y)) - half
    axis = np.arange(2 * half + 1, dtype=np.float32)
    return axis[None, :] + np.float32(x0 - x), axis[:, None] + np.float32(y0 - y), x0, y0


def _ellipse(dx, dy, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
    """Anti-aliased filled ellipse (alpha 1 inside, ~1 px soft edge)."""
    c, s = math.cos(angle), math.sin(angle)
    e = np.sqrt(((dx * c + dy * s) / rx) ** 2 + ((dy * c - dx * s) / ry) ** 2)
    return np.clip((1.0 - e) * math.sqrt(rx * ry) + 0.5, 0.0, 1.0)


def stamp(retina: Retina, mask: np.ndarray, alpha: np.ndarray, x0: int, y0: int,
          colour, tint: bool = False) -> None:
    """Blend an alpha patch (top-left x0, y0) into the image and its visible part into mask.

    ``tint`` colours multiply the local retina (blood: darker and redder wherever it
    lies); otherwise ``colour`` is an RGB lit by the local illumination.
    """
    h, w = alpha.shape
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(retina.size, x0 + w), min(retina.size, y0 + h)
    if ix1 <= ix0 or iy1 <= iy0:
        return
    a = alpha[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] * retina.fov_alpha[iy0:iy1, ix0:ix1]
    region = retina.image[:, iy0:iy1, ix0:ix1]
    if tint:
        target = region * np.float32(colour)[:, None, None]
    else:
        target = retina.illumination[None, iy0:iy1, ix0:ix1] * np.float32(colour)[:, None, None]
    region += a[None] * (target - region)
    mask[iy0:iy1, ix0:ix1] |= a >= VISIBLE_ALPHA


def microaneurysm(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """A tiny round red dot (radius 1.4-2.4 px at 256 px)."""
    r = rng.uniform(1.4, 2.4) * retina.scale
    dx, dy, x0, y0 = _patch(x, y, int(r) + 2)
    alpha = _ellipse(dx, dy, r, r * rng.uniform(0.85, 1.0), rng.uniform(0, math.pi))
    stamp(retina, mask, alpha * rng.uniform(0.85, 0.95), x0, y0, MICROANEURYSM_TINT, tint=True)


def haemorrhage(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """A dark red blot (irregular union of ellipses) or, less often, a flame shape."""
    r = rng.uniform(3.0, 8.0) * retina.scale
    dx, dy, x0, y0 = _patch(x, y, int(2 * r) + 3)
    if rng.random() < 0.25:  # flame haemorrhage: elongated along the nerve fibres
        alpha = _ellipse(dx, dy, r * 1.3, r * rng.uniform(0.3, 0.45), rng.uniform(0, math.pi))
    else:
        alpha = np.zeros((dy.shape[0], dx.shape[1]), np.float32)
        for _ in range(int(rng.integers(2, 6))):
            ox, oy = rng.normal(0.0, 0.35 * r, 2)
            rr = r * rng.uniform(0.45, 0.9)
            aspect, angle = rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
            alpha = np.maximum(alpha, _ellipse(dx - ox, dy - oy, rr, rr * aspect, angle))
    alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), 0.6 * retina.scale)
    stamp(retina, mask, alpha * rng.uniform(0.8, 0.95), x0, y0, HAEMORRHAGE_TINT, tint=True)


def hard_exudate(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """A cluster of 3-14 bright yellow, sharp-edged specks."""
    spread = rng.uniform(2.0, 6.0) * retina.scale
    half = int(2.5 * spread + 3 * retina.scale) + 2
    dx, dy, x0, y0 = _patch(x, y, half)
    alpha = np.zeros((dy.shape[0], dx.shape[1]), np.float32)
    for _ in range(int(rng.integers(3, 15))):
        ox, oy = np.clip(rng.normal(0.0, spread, 2), -2.5 * spread, 2.5 * spread)
        r = rng.uniform(0.9, 2.0) * retina.scale
        speck = _ellipse(dx - ox, dy - oy, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi))
        alpha = np.maximum(alpha, speck)
    colour = np.float32(HARD_EXUDATE_COLOUR) * rng.uniform(0.95, 1.05)
    stamp(retina, mask, alpha * rng.uniform(0.85, 1.0), x0, y0, colour)


def soft_exudate(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """A pale, lumpy, fuzzy-edged patch (cotton-wool spot)."""
    rx = rng.uniform(4.0, 9.0) * retina.scale
    ry, angle = rx * rng.uniform(0.55, 0.95), rng.uniform(0, math.pi)
    half = int(2 * rx) + 3
    dx, dy, x0, y0 = _patch(x, y, half)
    c, s = math.cos(angle), math.sin(angle)
    e2 = ((dx * c + dy * s) / rx) ** 2 + ((dy * c - dx * s) / ry) ** 2
    peak = rng.uniform(0.65, 0.85)
    # Falls to VISIBLE_ALPHA at the ellipse boundary, so the mask is about the ellipse.
    lumps = 1.0 + _smooth_noise(rng, 2 * half + 1, 4, 0.15)
    alpha = peak * np.exp(-math.log(peak / VISIBLE_ALPHA) * e2) * lumps
    stamp(retina, mask, np.clip(alpha, 0.0, 1.0), x0, y0, SOFT_EXUDATE_COLOUR)


def drusen(rng, retina: Retina, mask: np.ndarray, x: float, y: float, radius: float) -> None:
    """A round yellow-white dome; ``radius`` (px at 256) is shared by an image's drusen."""
    r = radius * rng.uniform(0.85, 1.15) * retina.scale
    dx, dy, x0, y0 = _patch(x, y, int(r) + 2)
    dome = np.sqrt(np.clip(1.0 - (dx ** 2 + dy ** 2) / (r + 0.5) ** 2, 0.0, 1.0))
    stamp(retina, mask, dome * rng.uniform(0.6, 0.8), x0, y0, DRUSEN_COLOUR)


def dust(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """Artifact: a blurred grey disc, the shadow of a dust speck on the optics."""
    r = rng.uniform(2.5, 6.0) * retina.scale
    dx, dy, x0, y0 = _patch(x, y, int(2 * r) + 3)
    alpha = cv2.GaussianBlur(_ellipse(dx, dy, r, r), (0, 0), 0.35 * r)
    stamp(retina, mask, alpha * rng.uniform(0.5, 0.75), x0, y0, DUST_COLOUR)


def reflection(rng, retina: Retina, mask: np.ndarray, x: float, y: float) -> None:
    """Artifact: a thin, slightly curved streak of reflected light."""
    length = rng.uniform(15.0, 45.0) * retina.scale
    half = int(length / 2) + 4
    big = (2 * half + 1) * _SUPERSAMPLE
    t = np.linspace(-0.5, 0.5, 12)
    angle, bow = rng.uniform(0, math.pi), rng.normal(0.0, 0.15) * length
    px = half + t * length * math.cos(angle) - (bow * (1 - 4 * t ** 2)) * math.sin(angle)
    py = half + t * length * math.sin(angle) + (bow * (1 - 4 * t ** 2)) * math.cos(angle)
    points = _fixed_point(np.stack([px, py], 1))
    canvas = np.zeros((big, big), np.uint8)
    width = max(1, int(round(rng.uniform(1.2, 2.5) * retina.scale * _SUPERSAMPLE)))
    cv2.polylines(canvas, [points], False, 255, width, cv2.LINE_AA, _SHIFT)
    alpha = cv2.resize(canvas, (2 * half + 1,) * 2, interpolation=cv2.INTER_AREA) / np.float32(255)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7 * retina.scale)
    x0, y0 = int(round(x)) - half, int(round(y)) - half
    stamp(retina, mask, alpha * rng.uniform(0.45, 0.65), x0, y0, REFLECTION_COLOUR)
