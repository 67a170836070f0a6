"""How the synthetic VOC set looks: 20 object classes as shape x texture x hue, on clutter.

This module draws one image and its label map (``render_voc_image``);
``data_pipelines.synthetic_voc`` plans the set and writes the files. Each foreground
class is a fixed (shape, texture, hue) combination (``CLASS_STYLES``), chosen so that no
single cue names the class.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from coopseg.config import IGNORE_LABEL, ConfigError

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "ellipse", "crescent",
          "hexagon", "arrow")
TEXTURES = ("solid", "stripes", "checker", "dots")
# Ten hues 36 degrees apart; the per-object jitter (HUE_JITTER) keeps a 20-degree gap.
HUES = tuple(36.0 * k for k in range(10))
HUE_JITTER = 8.0

# Class c (1..20) -> (shape, texture, hue in degrees). Classes k+1 and k+11 share hue k
# but differ in shape (k vs k+5); two classes with one shape differ in hue and texture.
# With object colours jittered per object and distractor lines in the object hues on
# the background, a classifier or segmenter has to combine colour with shape or
# texture, as on real data, while every class stays learnable from a few examples.
CLASS_STYLES: Tuple[Tuple[str, str, float], ...] = tuple(
    [(SHAPES[k], TEXTURES[k % 4], HUES[k]) for k in range(10)]
    + [(SHAPES[(k + 5) % 10], TEXTURES[(k + 2) % 4], HUES[k]) for k in range(10)])
NUM_FOREGROUND = len(CLASS_STYLES)


def _rgb(hue_deg: float, saturation: float, value: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, saturation, value)
    return np.array((r, g, b), np.float32) * 255.0


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.arange(2 * points) * math.pi / points - math.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


# Polygons on the unit disc (x, y), before rotation, aspect jitter and scaling.
_POLYGONS = {
    "square": np.array([(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)]),
    "triangle": _star(3, 1.0)[::2] * 1.05,  # every other vertex of a 6-point "star"
    "star": _star(5, 0.45),
    "cross": np.array([(-0.3, -1), (0.3, -1), (0.3, -0.3), (1, -0.3), (1, 0.3), (0.3, 0.3),
                       (0.3, 1), (-0.3, 1), (-0.3, 0.3), (-1, 0.3), (-1, -0.3), (-0.3, -0.3)]),
    "hexagon": _star(3, 1.0),  # inner radius 1: a regular hexagon
    "arrow": np.array([(-1, -0.25), (0.15, -0.25), (0.15, -0.65), (1, 0), (0.15, 0.65),
                       (0.15, 0.25), (-1, 0.25)]),
}


def shape_mask(rng: np.random.Generator, shape: str, size: int, center: Tuple[float, float],
               radius: float) -> np.ndarray:
    """uint8 0/1 mask of one ``shape`` at a random rotation and slight aspect distortion."""
    mask = np.zeros((size, size), np.uint8)
    angle = rng.uniform(0.0, 2 * math.pi)
    stretch = rng.uniform(0.85, 1.15)  # mild: keeps e.g. circle and ellipse apart
    cx, cy = center
    if shape in _POLYGONS:
        pts = _POLYGONS[shape] * radius * np.array([stretch, 1.0 / stretch])
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        pts = pts @ rot.T + np.array([cx, cy])
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
        return mask
    deg = math.degrees(angle)
    axes = (round(radius * stretch), round(radius / stretch))
    if shape == "ellipse":  # clearly elongated, unlike the jittered circle
        axes = (round(radius), round(radius * rng.uniform(0.4, 0.55)))
    cv2.ellipse(mask, (round(cx), round(cy)), axes, deg, 0, 360, 1, -1)
    if shape == "ring":  # a hole about half the radius, showing background
        hole = (round(axes[0] * 0.5), round(axes[1] * 0.5))
        cv2.ellipse(mask, (round(cx), round(cy)), hole, deg, 0, 360, 0, -1)
    elif shape == "crescent":  # a disc with an offset disc bitten out
        bite = (cx + 0.55 * radius * math.cos(angle), cy + 0.55 * radius * math.sin(angle))
        cv2.circle(mask, (round(bite[0]), round(bite[1])), round(0.8 * radius), 0, -1)
    elif shape not in ("circle", "ellipse"):
        raise ValueError(f"unknown shape {shape!r}")
    return mask


def texture(rng: np.random.Generator, kind: str, size: int, radius: float) -> np.ndarray:
    """float32 H x W in [0, 1]: where the object shows its second tone (1) or its base (0)."""
    if kind == "solid":
        return np.zeros((size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0.0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    # Periods scale with the object but stay >= 4 px so the pattern survives JPEG.
    period = max(4.0, radius * rng.uniform(0.35, 0.5))
    phase = rng.uniform(0.0, period)
    if kind == "stripes":
        return (((u + phase) % period) < period / 2).astype(np.float32)
    if kind == "checker":
        return ((((u + phase) // period) + ((v + phase) // period)) % 2).astype(np.float32)
    if kind == "dots":
        du = (u + phase) % period - period / 2
        dv = (v + phase) % period - period / 2
        return (du * du + dv * dv < (0.3 * period) ** 2).astype(np.float32)
    raise ValueError(f"unknown texture {kind!r}")


def paint_object(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, class_index: int,
                 radius: float) -> None:
    """Paint class ``class_index``'s jittered colour and texture into ``image`` where ``mask``."""
    _, kind, hue = CLASS_STYLES[class_index - 1]
    hue += rng.uniform(-HUE_JITTER, HUE_JITTER)
    base = _rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.55, 0.95))
    # The second tone is a darker or paler version of the same hue.
    second = base * rng.uniform(0.35, 0.55) if rng.random() < 0.5 else (
        _rgb(hue, rng.uniform(0.15, 0.3), rng.uniform(0.85, 1.0)))
    size = image.shape[0]
    pattern = texture(rng, kind, size, radius)[..., None]
    # A linear shading ramp across the object, as if lit from one side.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0.0, 2 * math.pi)
    shade = 1.0 + rng.uniform(0.1, 0.3) * ((xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a))
    colour = (base * (1 - pattern) + second * pattern) * shade[..., None]
    inside = mask.astype(bool)
    image[inside] = colour[inside]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered background: two-colour gradient, blotchy noise and distractor lines.

    Lines use any hue at object-like saturation, so a pixel's colour alone cannot
    separate background from objects; they are labelled background.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0.0, 2 * math.pi)
    ramp = np.clip(0.5 + (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a), 0, 1)[..., None]
    c0 = _rgb(rng.uniform(0, 360), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.9))
    c1 = _rgb(rng.uniform(0, 360), rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.9))
    image = c0 * (1 - ramp) + c1 * ramp
    cells = int(rng.integers(3, 7))
    blotches = cv2.resize(rng.normal(0.0, 18.0, (cells, cells, 3)).astype(np.float32),
                          (size, size), interpolation=cv2.INTER_CUBIC)
    image = np.ascontiguousarray(image + blotches, np.float32)
    for _ in range(int(rng.integers(2, 6))):
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        colour = _rgb(rng.uniform(0, 360), rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.95))
        thickness = max(1, round(size / 144 * rng.uniform(1, 3)))
        cv2.line(image, tuple(int(v) for v in p0), tuple(int(v) for v in p1),
                 tuple(float(c) for c in colour), thickness, cv2.LINE_AA)
    return image


def finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Sensor noise and a slight blur, then uint8 RGB (images are float32 RGB H x W x 3 in
    [0, 255] while drawing; masks uint8 0/1 H x W)."""
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image = image + rng.normal(0.0, 6.0, image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- one image

OBJECT_COUNTS = ((1, 2, 3), (0.5, 0.3, 0.2))
SAME_CLASS_PROB = 0.5  # an extra object repeats the main class: ~70 % single-class images
RADIUS_FRACTION = (0.13, 0.27)  # of the image side
MIN_RADIUS = 6.0  # px: keeps an object's interior after the void band at 32 px
MIN_VISIBLE = 0.3  # of an object's pixels must stay labelled after occlusion and band
_LAYOUT_TRIES, _SINGLE_AFTER = 50, 10  # after 10 failed layouts, the main object alone


@dataclass(frozen=True)
class VocImage:
    """One rendered image, its VOC label map and the classes drawn into it."""

    image: np.ndarray  # RGB uint8 H x W x 3
    label: np.ndarray  # uint8 H x W: class index, IGNORE_LABEL on the void band
    classes: Tuple[int, ...]  # sorted foreground classes drawn (all visible in ``label``)


def band_radius(image_size: int) -> int:
    """Half-width of the void band: VOC's ~5 px border at 500 px is ~1 % of the side."""
    return max(1, round(image_size / 144))


def render_voc_image(rng_seed: int, main_class: int, image_size: int = 144) -> VocImage:
    """One image with ``main_class`` (1..20) and possibly more objects, and its label map.

    Layouts where an object would be mostly hidden (by a later object, the frame or the
    band) are redrawn, so every class drawn is in the label map and hence in the image
    labels DecoupledNet derives from it. Later objects are drawn on top.
    """
    if not 1 <= main_class <= NUM_FOREGROUND:
        raise ConfigError(f"main_class must be in 1..{NUM_FOREGROUND}, got {main_class}")
    if image_size < 32:
        raise ConfigError(f"image_size must be >= 32, got {image_size}")
    rng = np.random.default_rng(rng_seed)
    classes = [main_class]
    for _ in range(int(rng.choice(OBJECT_COUNTS[0], p=OBJECT_COUNTS[1])) - 1):
        other = int(rng.integers(1, NUM_FOREGROUND))  # 1..19, skipping main_class
        classes.append(main_class if rng.random() < SAME_CLASS_PROB
                       else other + (other >= main_class))
    image = background(rng, image_size)
    r = band_radius(image_size)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    for attempt in range(_LAYOUT_TRIES):
        drawn = classes if attempt < _SINGLE_AFTER else classes[:1]
        objects, owner = [], np.zeros((image_size, image_size), np.uint8)
        for number, cls in enumerate(drawn, 1):
            radius = max(MIN_RADIUS, rng.uniform(*RADIUS_FRACTION) * image_size)
            centre = rng.uniform(0.8 * radius, image_size - 0.8 * radius, 2)
            mask = shape_mask(rng, CLASS_STYLES[cls - 1][0], image_size,
                              (centre[0], centre[1]), radius)
            owner[mask > 0] = number  # later objects occlude earlier ones
            objects.append((radius, int(mask.sum())))
        band = np.zeros(owner.shape, bool)
        for number in range(1, len(drawn) + 1):
            # VOC's void border: the outline of each visible object, inside and out.
            own = (owner == number).astype(np.uint8)
            band |= (cv2.dilate(own, kernel) > 0) & ~(cv2.erode(own, kernel) > 0)
        visible = [np.count_nonzero((owner == n) & ~band) for n in range(1, len(drawn) + 1)]
        if all(v >= max(1, MIN_VISIBLE * area) for v, (_, area) in zip(visible, objects)):
            break
    else:
        raise RuntimeError(f"synthetic VOC: no visible layout for seed {rng_seed}")  # a bug
    for number, (cls, (radius, _)) in enumerate(zip(drawn, objects), 1):
        paint_object(rng, image, owner == number, cls, radius)
    label = np.concatenate([[0], drawn]).astype(np.uint8)[owner]
    label[band] = IGNORE_LABEL
    return VocImage(finish(rng, image), label, tuple(sorted(set(drawn))))
