"""Tests of the synthetic fundus generator: rendering, lesion masks, on-disk layout, CLI."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coopseg.config import LESION_CLASSES, ConfigError
from data_pipelines import synthetic
from data_pipelines.records import DataError
from data_pipelines.synthetic import ensure_dataset, generate_dataset, render_fundus

REPO = Path(__file__).resolve().parents[1]
DR_LESIONS = ("microaneurysm", "haemorrhage", "hard_exudate", "soft_exudate")
TINY = dict(num_graded_train=5, num_graded_val=3, num_masks_train=4, num_masks_val=2,
            image_size=64, seed=3, workers=2, progress=False)


def _lesion_pixels(masks, names=DR_LESIONS) -> int:
    return sum(int(masks[name].sum()) for name in names)


# ---------------------------------------------------------------- rendering


def test_same_seed_same_image_and_masks_other_seed_differs():
    image_a, masks_a = render_fundus(11, 3, 96)
    image_b, masks_b = render_fundus(11, 3, 96)
    image_c, _ = render_fundus(12, 3, 96)
    assert image_a.shape == (96, 96, 3) and image_a.dtype == np.uint8
    np.testing.assert_array_equal(image_a, image_b)
    assert set(masks_a) == set(LESION_CLASSES[1:])
    for name in masks_a:
        np.testing.assert_array_equal(masks_a[name], masks_b[name])
    assert np.abs(image_a.astype(int) - image_c.astype(int)).mean() > 1.0


@pytest.mark.parametrize("grade", range(5))
def test_masks_binary_inside_field_of_view_and_mostly_background(grade):
    size = 128
    image, masks = render_fundus(100 + grade, grade, size, lesion_bias=1.5)
    foreground = np.zeros((size, size), bool)
    for name, mask in masks.items():
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}, name
        foreground |= mask.astype(bool)
    assert 1.0 - foreground.mean() > 0.9
    # The surround (image corners) is black; every lesion pixel lies on the lit retina.
    assert image[:6, :6].max() < 20 and image[-6:, -6:].max() < 20
    ys, xs = np.nonzero(foreground)
    assert np.all(np.hypot(xs - size / 2, ys - size / 2) < 0.5 * size)
    assert np.all(image[foreground].max(axis=1) > 20)  # not the black surround


def test_grade_zero_has_no_dr_lesions_and_grade_four_has_most():
    for seed in range(4):
        _, masks = render_fundus(seed, 0, 96)
        assert _lesion_pixels(masks) == 0
    area = {grade: np.mean([_lesion_pixels(render_fundus(seed, grade, 96)[1]) for seed in range(6)])
            for grade in (1, 4)}
    assert area[1] > 0
    assert area[4] > 3 * area[1]


def test_drusen_and_artifacts_appear_independently_of_grade():
    found = {"drusen": 0, "artifact": 0}
    for seed in range(24):
        _, masks = render_fundus(seed, 0, 64)
        for name in found:
            found[name] += int(masks[name].any())
    # Each has a 25-35 % chance per image, so over 24 grade-0 images both appear but not always.
    assert 0 < found["drusen"] < 24 and 0 < found["artifact"] < 24


def _ring(mask: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Retina just around a lesion: a few pixels out, away from any lesion."""
    outer = cv2.dilate(mask, np.ones((9, 9), np.uint8)).astype(bool)
    inner = cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)
    return outer & ~inner & ~exclude


def _redness(pixels: np.ndarray) -> np.ndarray:
    return pixels[:, 0] / pixels.sum(axis=1)


def _yellowness(pixels: np.ndarray) -> np.ndarray:
    """G / R: about 1 for yellow, about 0.4 on the orange-red retina."""
    return pixels[:, 1] / pixels[:, 0]


def test_lesions_are_visible_in_the_image():
    for seed in range(3):
        image, masks = render_fundus(seed, 3, 256)
        pixels = image.astype(np.float64)
        # Rings skip other lesions and the black surround beyond the field of view.
        any_lesion = np.any(np.stack(list(masks.values())), axis=0) | (image.max(axis=2) < 20)
        ma = masks["microaneurysm"].astype(bool)
        ring = _ring(masks["microaneurysm"], any_lesion)
        assert ma.sum() > 0 and ring.sum() > 0
        inside, around = pixels[ma], pixels[ring]
        assert inside.sum(axis=1).mean() < 0.85 * around.sum(axis=1).mean()  # darker
        assert _redness(inside).mean() > _redness(around).mean()  # redder
        ex = masks["hard_exudate"].astype(bool)
        ring = _ring(masks["hard_exudate"], any_lesion)
        assert ex.sum() > 0
        assert pixels[ex].sum(axis=1).mean() > pixels[ring].sum(axis=1).mean()  # brighter
        assert _yellowness(pixels[ex]).mean() > _yellowness(pixels[ring]).mean() + 0.15


def test_render_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="grade"):
        render_fundus(0, 5, 64)
    with pytest.raises(ConfigError, match="image_size"):
        render_fundus(0, 1, 16)


# ---------------------------------------------------------------- data set on disk


def _read_csv(path: Path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_generate_dataset_writes_the_reader_layouts(tmp_path):
    out = tmp_path / "synth"
    manifest = generate_dataset(str(out), **TINY)
    patients = {}
    for split, count in (("graded_train", 5), ("graded_val", 3)):
        header, rows = _read_csv(out / split / "trainLabels.csv")
        assert header == ["image", "level"] and len(rows) == count
        for image_id, level in rows:
            assert re.fullmatch(r"\d+_(left|right)", image_id) and level in "01234"
            image = cv2.imread(str(out / split / "train" / f"{image_id}.jpeg"))
            assert image.shape == (64, 64, 3)
        ids = [row[0] for row in rows]
        for left, right in zip(ids[0::2], ids[1::2]):  # consecutive pairs: one patient
            assert left.endswith("_left") and right == left.replace("_left", "_right")
        patients[split] = {i.split("_")[0] for i in ids}
        assert manifest["grade_histogram"][split] == np.bincount(
            [int(r[1]) for r in rows], minlength=5).tolist()
    assert not patients["graded_train"] & patients["graded_val"]

    for split, count in (("lesions_train", 4), ("lesions_val", 2)):
        header, rows = _read_csv(out / split / "grades.csv")
        assert header == ["image", "level"] and len(rows) == count
        pixels = np.zeros(len(LESION_CLASSES) - 1)
        for image_id, _ in rows:
            assert cv2.imread(str(out / split / "images" / f"{image_id}.jpg")).shape == (64, 64, 3)
            for c, name in enumerate(LESION_CLASSES[1:]):
                path = out / split / "masks" / name / f"{image_id}.png"
                if path.exists():
                    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                    assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}, path
                    pixels[c] += np.count_nonzero(mask)
        fractions = manifest["class_pixel_fractions"][split]
        np.testing.assert_allclose(pixels / (count * 64 * 64),
                                   [fractions[name] for name in LESION_CLASSES[1:]])
        assert fractions["background"] > 0.9

    on_disk = json.loads((out / "synthetic.json").read_text())
    assert on_disk == manifest
    assert manifest["class_names"] == list(LESION_CLASSES)
    assert manifest["seed"] == 3 and manifest["image_size"] == 64
    assert manifest["counts"] == {"graded_train": 5, "graded_val": 3, "lesions_train": 4,
                                  "lesions_val": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no temp dirs left


def test_images_do_not_depend_on_set_size(tmp_path):
    small = dict(TINY, num_graded_train=2, num_masks_train=2)
    generate_dataset(str(tmp_path / "a"), **TINY)
    generate_dataset(str(tmp_path / "b"), **small)
    _, rows_a = _read_csv(tmp_path / "a" / "graded_train" / "trainLabels.csv")
    _, rows_b = _read_csv(tmp_path / "b" / "graded_train" / "trainLabels.csv")
    assert rows_a[:2] == rows_b
    same_files = (f"graded_train/train/{rows_b[1][0]}.jpeg",
                  "lesions_train/images/lesions_train_00001.jpg")
    for rel in same_files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_ensure_dataset_reuses_then_regenerates_on_new_parameters(tmp_path):
    out = tmp_path / "synth"
    first = ensure_dataset(str(out), **TINY)
    stamp = (out / "synthetic.json").stat().st_mtime_ns
    again = ensure_dataset(str(out), **dict(TINY, workers=1))  # workers do not change content
    assert again == first and (out / "synthetic.json").stat().st_mtime_ns == stamp
    changed = ensure_dataset(str(out), **dict(TINY, num_masks_val=1))
    assert changed["counts"]["lesions_val"] == 1
    assert len(list((out / "lesions_val" / "images").iterdir())) == 1


def test_refuses_to_overwrite_a_foreign_directory(tmp_path):
    (tmp_path / "mine.txt").write_text("not a synthetic set")
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_dataset(str(tmp_path), **TINY)
    assert (tmp_path / "mine.txt").exists()


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(synthetic, "_write_item", broken)
    with pytest.raises(OSError, match="disk full"):
        generate_dataset(str(tmp_path / "synth"), **TINY)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "data_pipelines.synthetic", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_cli_requires_out_dir():
    result = _cli("--num_graded_train=1")
    assert result.returncode != 0
    assert "out_dir" in result.stderr


def test_cli_writes_a_set(tmp_path):
    result = _cli(f"--out_dir={tmp_path / 'cli'}", "--num_graded_train=2", "--num_graded_val=0",
                  "--num_masks_train=1", "--num_masks_val=0", "--image_size=64")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "cli" / "synthetic.json").read_text())
    assert manifest["counts"]["graded_train"] == 2 and manifest["image_size"] == 64
