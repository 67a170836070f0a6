"""The synthetic VOC set: devkit layout read by the VOC reader, void band, balance, CLI."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from coopseg.config import ConfigError
from data_pipelines import imageio, synthetic_voc
from data_pipelines import synthetic_voc_shapes as shapes
from data_pipelines.labels import strong_subset
from data_pipelines.records import DataError
from data_pipelines.synthetic_voc import ensure_voc_dataset, generate_voc_dataset
from data_pipelines.voc import VOC_CLASSES, load_voc, read_voc_label

REPO = Path(__file__).resolve().parents[1]
TINY = dict(num_train=12, num_val=4, image_size=48, seed=5, workers=2, progress=False)
SQUARE3 = np.ones((3, 3), np.uint8)


@pytest.fixture(scope="module")
def voc_set(tmp_path_factory):
    """120 train / 8 val images at 64 px: enough for >= 5 images of every class."""
    out = tmp_path_factory.mktemp("voc") / "synthetic_voc"
    manifest = generate_voc_dataset(str(out), num_train=120, num_val=8, image_size=64, seed=0,
                                    workers=2, progress=False)
    return out, manifest


def _classes(example):
    return [c for c, on in enumerate(example.image_labels, 1) if on]


def _hashes(root: Path):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- read by the VOC reader


def test_the_voc_reader_reads_the_set(voc_set):
    out, manifest = voc_set
    root = manifest["root"]
    assert root == str((out / "VOC2012").resolve())
    train = load_voc(root, "train")
    val = load_voc(os.path.join(root, "ImageSets", "Segmentation", "val.txt"))
    assert (len(train), len(val)) == (120, 8)
    train_ids, val_ids = {e.image_id for e in train}, {e.image_id for e in val}
    assert not train_ids & val_ids
    assert {e.image_id for e in load_voc(root, "trainval")} == train_ids | val_ids
    assert all(re.fullmatch(r"20\d\d_\d{6}", i) for i in train_ids | val_ids)
    assert [e.image_id for e in load_voc(str(out))] == sorted(train_ids)  # <out> is a VOCdevkit
    image = cv2.imread(train[0].image_path)
    assert image.shape == (64, 64, 3)
    on_disk = json.loads((out / synthetic_voc.MANIFEST).read_text())
    assert on_disk == dict(manifest, root="VOC2012")
    assert on_disk["counts"] == {"train": 120, "val": 8} and on_disk["image_size"] == 64
    assert on_disk["class_names"] == list(VOC_CLASSES)
    for split, examples in (("train", train), ("val", val)):
        counted = np.sum([e.image_labels for e in examples], axis=0).tolist()
        assert counted == list(on_disk["class_image_counts"][split].values())


def test_label_maps_are_voc_palette_pngs_matching_the_classes_drawn(voc_set):
    out, manifest = voc_set
    for example in load_voc(manifest["root"], "trainval"):
        data = Path(example.label_path).read_bytes()
        assert data[12:16] == b"IHDR" and data[24:26] == bytes([8, 3])  # 8-bit palette PNG
        label = read_voc_label(example.label_path)
        assert set(np.unique(label).tolist()) <= set(range(21)) | {255}
        np.testing.assert_array_equal(imageio.read_label_map(example.label_path, 21), label)
        assert _classes(example) == manifest["image_classes"][example.image_id]


def test_every_class_drawn_stays_visible_in_the_label_map():
    # Many small renders: occlusion, the frame and the band would hide some objects
    # entirely if layouts were not redrawn.
    for seed in range(300):
        drawn = shapes.render_voc_image(seed, 1 + seed % 20, 40)
        assert drawn.image.shape == (40, 40, 3) and drawn.label.shape == (40, 40)
        present, counts = np.unique(drawn.label, return_counts=True)
        visible = {int(c): int(n) for c, n in zip(present, counts) if 0 < c < 255}
        assert sorted(visible) == list(drawn.classes) and 1 + seed % 20 in visible, seed
        assert min(visible.values()) >= 8, (seed, visible)


def test_a_void_band_separates_every_object_from_its_surroundings(voc_set):
    _, manifest = voc_set
    for example in load_voc(manifest["root"], "val", with_image_labels=False)[:8]:
        label = read_voc_label(example.label_path)
        ignore = label == 255
        foreground = (label > 0) & ~ignore
        assert ignore.any() and foreground.any()
        # No object pixel touches background or another class's pixel directly...
        touching = cv2.dilate(foreground.astype(np.uint8), SQUARE3) > 0
        assert not (touching & (label == 0)).any()
        for c in np.unique(label[foreground]):
            grown = cv2.dilate((label == c).astype(np.uint8), SQUARE3) > 0
            assert not (grown & foreground & (label != c)).any()
        # ...and the band hugs the objects: every void pixel is within 3 px of one.
        near = cv2.dilate(foreground.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert not (ignore & ~near).any()
        assert ignore.mean() < 0.25


def test_a_strong_subset_of_five_per_class_exists(voc_set):
    _, manifest = voc_set
    train = load_voc(manifest["root"], "train")
    per_class = np.sum([e.image_labels for e in train], axis=0)
    assert per_class.min() >= 5, per_class
    strong = strong_subset(train, 5, VOC_CLASSES)
    assert len(strong) <= 100
    assert np.sum([e.image_labels for e in strong], axis=0).min() >= 5
    # Like VOC, most images hold a single class, but not all.
    single, double, triple = manifest["classes_per_image"]["train"]
    assert single > 60 and double + triple > 10


def test_colour_alone_does_not_name_the_class():
    styles = shapes.CLASS_STYLES
    assert len(set(styles)) == 20 and len({(s, t) for s, t, _ in styles}) == 20
    for hue in shapes.HUES:  # each hue: two classes, two shapes
        assert len({s for s, _, h in styles if h == hue}) == 2
    pixels = {c: [] for c in range(1, 21)}
    for i in range(60):
        drawn = shapes.render_voc_image(1000 + i, 1 + i % 20, 64)
        for c in drawn.classes:
            pixels[c].append(drawn.image[drawn.label == c].astype(np.float32))
    pixels = {c: np.concatenate(p) for c, p in pixels.items()}
    means = np.stack([pixels[c].mean(axis=0) for c in range(1, 21)])
    x = np.concatenate(list(pixels.values()))
    y = np.concatenate([np.full(len(p), c) for c, p in pixels.items()])
    nearest = np.argmin(((x[:, None] - means[None]) ** 2).sum(axis=2), axis=1) + 1
    # A pixel's colour helps (chance is 5 %) but leaves much to shape and texture.
    assert 0.1 < (nearest == y).mean() < 0.7


# ---------------------------------------------------------------- determinism, reuse


def test_same_seed_same_bytes_other_seed_differs_and_set_size_does_not_matter(tmp_path):
    generate_voc_dataset(str(tmp_path / "a"), **TINY)
    generate_voc_dataset(str(tmp_path / "b"), **dict(TINY, workers=1))
    generate_voc_dataset(str(tmp_path / "c"), **dict(TINY, seed=6))
    generate_voc_dataset(str(tmp_path / "small"), **dict(TINY, num_train=3))
    a, b, c = (_hashes(tmp_path / name) for name in "abc")
    assert a == b and len(a) == 2 * 16 + 4  # images, labels, 3 split files, manifest
    images = [k for k in a if k.endswith((".jpg", ".png"))]
    assert all(a[k] != c[k] for k in images)
    small = _hashes(tmp_path / "small")
    assert all(small[k] == a[k] for k in small if "2007_" in k)


def test_ensure_reuses_a_matching_set_and_regenerates_otherwise(tmp_path):
    out = tmp_path / "set"
    first = ensure_voc_dataset(str(out), **TINY)
    files = [out / synthetic_voc.MANIFEST, Path(first["root"]) / "JPEGImages" / "2007_000001.jpg"]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert ensure_voc_dataset(str(out), **dict(TINY, workers=1)) == first
    assert [f.stat().st_mtime_ns for f in files] == stamps
    changed = ensure_voc_dataset(str(out), **dict(TINY, num_val=2))
    assert changed["counts"]["val"] == 2
    assert len(os.listdir(Path(changed["root"]) / "JPEGImages")) == 14
    (Path(changed["root"]) / "JPEGImages" / "2008_000001.jpg").unlink()  # incomplete set
    ensure_voc_dataset(str(out), **dict(TINY, num_val=2))
    assert (Path(changed["root"]) / "JPEGImages" / "2008_000001.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temporary folders


def test_bad_arguments_and_foreign_folders(tmp_path, monkeypatch):
    for bad, match in ((dict(num_train=0), "num_train"), (dict(num_val=-1), "num_val"),
                       (dict(image_size=16), "image_size"), (dict(seed=-1), "seed")):
        with pytest.raises(ConfigError, match=match):
            generate_voc_dataset(str(tmp_path / "x"), **dict(TINY, **bad))
    (tmp_path / "mine.txt").write_text("not a synthetic set")
    with pytest.raises(DataError, match="refusing to overwrite"):
        generate_voc_dataset(str(tmp_path), **TINY)

    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(synthetic_voc, "_write_item", broken)
    with pytest.raises(OSError, match="disk full"):
        generate_voc_dataset(str(tmp_path / "y"), **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
    with pytest.raises(ConfigError, match="beyond the palette"):
        imageio.write_palette_png(str(tmp_path / "p.png"), np.full((2, 2), 3, np.uint8),
                                  np.zeros((3, 3), np.uint8))


# ---------------------------------------------------------------- command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "data_pipelines.synthetic_voc", *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_cli_writes_a_set_and_rejects_bad_flags(tmp_path):
    result = _cli(f"--out={tmp_path / 'cli'}", "--train=4", "--val=2", "--size=48", "--seed=1")
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "cli") in result.stdout and "4 train, 2 val" in result.stdout
    manifest = json.loads((tmp_path / "cli" / synthetic_voc.MANIFEST).read_text())
    assert manifest["counts"] == {"train": 4, "val": 2} and manifest["seed"] == 1
    bad = _cli(f"--out={tmp_path / 'bad'}", "--size=16")
    assert bad.returncode != 0 and "image_size must be an integer >= 32" in bad.stderr
    assert not (tmp_path / "bad").exists()
