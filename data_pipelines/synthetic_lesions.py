"""How the lesions of the synthetic fundus set look, and how many a DR grade has.

``data_pipelines.synthetic_draw`` draws the healthy retina; this module draws the
paper's lesion classes on it (microaneurysms, haemorrhages, hard and soft exudates,
drusen, artifacts), with counts that follow the DR grade (``DR_LESION_COUNTS``).
"""
from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

from data_pipelines.synthetic_draw import SHIFT, SUPERSAMPLE, Retina, fixed_point, smooth_noise

# A lesion is a patch of blending weights (alpha): the image moves towards the lesion's
# colour by alpha, and the lesion's mask is where alpha >= VISIBLE_ALPHA. So a mask is
# exactly the set of pixels where that lesion can be seen.
VISIBLE_ALPHA = 0.25


# ---------------------------------------------------------------- how a lesion looks
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
    lumps = 1.0 + smooth_noise(rng, 2 * half + 1, 4, 0.15)
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
    big = (2 * half + 1) * SUPERSAMPLE
    t = np.linspace(-0.5, 0.5, 12)
    angle, bow = rng.uniform(0, math.pi), rng.normal(0.0, 0.15) * length
    px = half + t * length * math.cos(angle) - (bow * (1 - 4 * t ** 2)) * math.sin(angle)
    py = half + t * length * math.sin(angle) + (bow * (1 - 4 * t ** 2)) * math.cos(angle)
    points = fixed_point(np.stack([px, py], 1))
    canvas = np.zeros((big, big), np.uint8)
    width = max(1, int(round(rng.uniform(1.2, 2.5) * retina.scale * SUPERSAMPLE)))
    cv2.polylines(canvas, [points], False, 255, width, cv2.LINE_AA, SHIFT)
    alpha = cv2.resize(canvas, (2 * half + 1,) * 2, interpolation=cv2.INTER_AREA) / np.float32(255)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.7 * retina.scale)
    x0, y0 = int(round(x)) - half, int(round(y)) - half
    stamp(retina, mask, alpha * rng.uniform(0.45, 0.65), x0, y0, REFLECTION_COLOUR)


# ---------------------------------------------------------------- what a grade shows

# Inclusive (low, high) count of each DR lesion per grade 0..4 (ETDRS-like: 1 = MAs
# only, 2 = + haemorrhages and hard exudates, 3 = + many bleeds and cotton-wool spots,
# 4 = all of it and more). Ranges of neighbouring grades overlap, so the grade is
# learnable from the whole image but not from a single lesion. Hard exudates count
# clusters of specks.
DR_LESION_COUNTS = {
    "microaneurysm": ((0, 0), (1, 6), (3, 12), (6, 18), (8, 22)),
    "haemorrhage": ((0, 0), (0, 0), (1, 5), (4, 11), (7, 15)),
    "hard_exudate": ((0, 0), (0, 0), (0, 3), (1, 5), (2, 7)),
    "soft_exudate": ((0, 0), (0, 0), (0, 0), (1, 3), (2, 5)),
}
# Age-related (drusen) and camera (artifact) findings, independent of the DR grade:
# (probability an image has any, low, high).
INCIDENTAL_COUNTS = {"drusen": (0.25, 4, 20), "artifact": (0.35, 1, 3)}
# How each DR lesion is drawn and where it sits: around which landmark, with what spread
# (fraction of the FOV radius). MAs, bleeds and exudates crowd the posterior pole;
# cotton-wool spots lie along the vessel arcades near the disc.
_DR_LESION_DRAWING = {
    "microaneurysm": (microaneurysm, "macula", 0.4),
    "haemorrhage": (haemorrhage, "macula", 0.45),
    "hard_exudate": (hard_exudate, "macula", 0.3),
    "soft_exudate": (soft_exudate, "disc", 0.4),
}


def lesion_count(rng: np.random.Generator, name: str, grade: int, bias: float) -> int:
    """How many lesions of class ``name`` an image of DR ``grade`` gets, times ``bias``."""
    if name in DR_LESION_COUNTS:
        low, high = DR_LESION_COUNTS[name][grade]
    else:
        chance, low, high = INCIDENTAL_COUNTS[name]
        if rng.random() >= chance:
            return 0
    return int(round(rng.integers(low, high + 1) * bias))


def draw_lesions(rng: np.random.Generator, retina: Retina, name: str, mask: np.ndarray,
                 count: int) -> None:
    """Draw ``count`` lesions of class ``name`` where that lesion sits, into ``mask`` too."""
    if name == "drusen":
        radius = rng.uniform(1.3, 2.6)  # drusen of one eye are alike in size
        for _ in range(count):
            drusen(rng, retina, mask, *sample_site(rng, retina, "macula", 0.22), radius)
    elif name == "artifact":
        for _ in range(count):
            kind = dust if rng.random() < 0.6 else reflection
            kind(rng, retina, mask, *sample_site(rng, retina))
    else:
        drawer, around, spread = _DR_LESION_DRAWING[name]
        for _ in range(count):
            drawer(rng, retina, mask, *sample_site(rng, retina, around, spread))
