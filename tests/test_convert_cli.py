"""Tests for coopseg-convert (coopseg/cli/convert.py, data_pipelines/conversion.py) on tiny sets."""
import dataclasses
import io
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from coopseg.cli import convert
from coopseg.config import ConfigError, LESION_CLASSES
from data_pipelines import conversion, tfrecords
from data_pipelines.records import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAEMORRHAGE = LESION_CLASSES.index("haemorrhage")
MICROANEURYSM = LESION_CLASSES.index("microaneurysm")


def _fundus(height=60, width=90, seed=0):
    """A retina disc on a wider black frame, as fundus cameras produce."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 2 - 2, (40, 90, 180), -1)
    return np.clip(image + rng.integers(0, 6, image.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def mask_set(tmp_path):
    """Generic layout: images/<id>.jpg + masks/<class>/<id>.png; one truncated image."""
    root = tmp_path / "lesions"
    for folder in ("images", "masks/haemorrhage", "masks/microaneurysm"):
        (root / folder).mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(root / "images" / f"case{i}.jpg"), _fundus(seed=i))
        haemorrhage = np.zeros((60, 90), np.uint8)
        cv2.circle(haemorrhage, (45, 30), 8, 255, -1)
        cv2.imwrite(str(root / "masks" / "haemorrhage" / f"case{i}.png"), haemorrhage)
        if i % 2 == 0:  # a microaneurysm inside the haemorrhage: it must win (priority)
            microaneurysm = np.zeros((60, 90), np.uint8)
            microaneurysm[28:32, 43:47] = 255
            cv2.imwrite(str(root / "masks" / "microaneurysm" / f"case{i}.png"), microaneurysm)
    jpeg = (root / "images" / "case5.jpg").read_bytes()
    (root / "images" / "case5.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return root


@pytest.fixture
def eyepacs_set(tmp_path):
    """EyePACS layout: trainLabels.csv + train/<id>.jpeg; one image is all black."""
    root = tmp_path / "eyepacs"
    (root / "train").mkdir(parents=True)
    rows = ["image,level"]
    for i, grade in enumerate([0, 2, 4, 2]):
        image = _fundus(seed=10 + i) if i != 3 else np.zeros((60, 90, 3), np.uint8)
        cv2.imwrite(str(root / "train" / f"{i}_left.jpeg"), image)
        rows.append(f"{i}_left,{grade}")
    (root / "trainLabels.csv").write_text("\n".join(rows) + "\n")
    return root


def _options(fmt, source, out, **kw):
    return conversion.ConvertOptions(format=fmt, input=str(source), output=str(out), size=32,
                                     workers=2, **kw)


def _run(options):
    return conversion.convert_split(options, progress_stream=io.StringIO())


def _shards(out):
    """Final shard names in ``out``, sorted."""
    return sorted(n for n in os.listdir(out) if n.endswith(".tfrecord"))


def test_mask_set_conversion_content_and_manifest(mask_set, tmp_path):
    out = tmp_path / "out"
    manifest = _run(_options("generic", mask_set, out, num_shards=3))
    entry = manifest["splits"]["train"]
    assert _shards(out) == [f"train-0000{k}-of-00003.tfrecord" for k in range(3)]
    assert manifest["class_names"] == list(LESION_CLASSES) and manifest["counts"] == {"train": 5}
    assert entry["count"] == 5 and entry["with_mask"] == 5 and entry["with_grade"] == 0
    assert [s["id"] for s in entry["skipped"]] == ["case5"]
    skipped = entry["skipped"][0]
    assert "case5.jpg" in skipped["file"] and "truncated" in skipped["reason"]
    assert entry["options"]["size"] == 32 and entry["options"]["crop_retina"] is True
    counts = entry["class_pixel_counts"]
    assert counts["haemorrhage"] > 0 and counts["microaneurysm"] > 0 and counts["drusen"] == 0
    assert abs(sum(entry["class_pixel_frequency"].values()) - 1.0) < 1e-9

    masks = [mask.numpy() for _, mask in tfrecords.mask_source_from_tfrecords(str(out))]
    assert len(masks) == 5 and all(m.shape == (32, 32) for m in masks)
    # Shard 0 holds the sorted ids case0 and case3: the microaneurysm overrides the
    # haemorrhage it sits in (LESION_PRIORITY) only where one was drawn (case0).
    assert masks[0][16, 16] == MICROANEURYSM and masks[1][16, 16] == HAEMORRHAGE
    # The disc fills the frame after the retina crop: no ignore padding left or right.
    assert (masks[0][:, 0] != 255).any() and entry["ignore_pixels"] < 5 * 32 * 8

    first = tfrecords.parse_example(next(iter(tf.data.TFRecordDataset(
        str(out / "train-00000-of-00003.tfrecord")))))
    labels = first["image/labels"].numpy().tolist()
    assert labels[HAEMORRHAGE - 1] == 1 and labels[MICROANEURYSM - 1] == 1 and sum(labels) == 2


def test_graded_conversion_crops_retina_and_lists_black_image(eyepacs_set, tmp_path):
    out = tmp_path / "out"
    manifest = _run(_options("eyepacs", eyepacs_set, out))
    entry = manifest["splits"]["train"]
    assert entry["grade_histogram"] == {"0": 1, "2": 2, "4": 1} and entry["with_mask"] == 0
    assert entry["no_retina_found"] == ["3_left"] and entry["skipped"] == []
    elements = list(tfrecords.graded_source_from_tfrecords(str(out)))
    assert [int(g) for _, g in elements] == [0, 2, 4, 2]
    image = elements[0][0].numpy()
    assert image.shape == (32, 32, 3)
    # The 90-px-wide frame was cropped to the 56-px disc: the middle row is retina
    # almost edge to edge, where an uncropped resize would leave wide black margins.
    assert (image[16].max(axis=1) > 20).sum() >= 28


def test_resume_rewrites_only_the_missing_shard(mask_set, tmp_path):
    out = tmp_path / "out"
    options = _options("generic", mask_set, out, num_shards=3)
    _run(options)
    before = {n: (out / n).read_bytes() for n in _shards(out)}
    manifest_before = (out / "manifest.json").read_bytes()
    mtimes = {n: os.stat(out / n).st_mtime_ns for n in before}
    os.remove(out / "train-00001-of-00003.tfrecord")
    stream = io.StringIO()
    conversion.convert_split(options, progress_stream=stream)
    # The resumed shards' images (and the one of them skipped) still count on the bar.
    last = stream.getvalue().splitlines()[-1]
    assert " 6/6 " in last and last.endswith("skipped 1"), last
    assert {n: (out / n).read_bytes() for n in _shards(out)} == before
    assert (out / "manifest.json").read_bytes() == manifest_before
    for name in ("train-00000-of-00003.tfrecord", "train-00002-of-00003.tfrecord"):
        assert os.stat(out / name).st_mtime_ns == mtimes[name]


def test_changed_options_are_an_error_unless_overwrite(eyepacs_set, tmp_path):
    out = tmp_path / "out"
    _run(_options("eyepacs", eyepacs_set, out))
    with pytest.raises(ConfigError, match="size: 32 -> 48.*--overwrite"):
        _run(dataclasses.replace(_options("eyepacs", eyepacs_set, out), size=48))
    with pytest.raises(ConfigError, match="num_shards: 1 -> 2"):
        _run(_options("eyepacs", eyepacs_set, out, num_shards=2))
    manifest = _run(_options("eyepacs", eyepacs_set, out, num_shards=2, graham=True,
                             overwrite=True))
    assert _shards(out) == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert manifest["splits"]["train"]["options"]["graham"] is True


def test_strict_mode_names_the_bad_file(mask_set, tmp_path):
    with pytest.raises(DataError, match="case5.jpg"):
        _run(_options("generic", mask_set, tmp_path / "out", strict=True))


def test_flag_validation_rejects_bad_command_lines(eyepacs_set, tmp_path):
    def parse(*args):
        values = flags.FlagValues()
        convert.define_flags(values)
        values(["coopseg-convert", *args])
        return values

    good = [f"--input={eyepacs_set}", f"--output={tmp_path / 'out'}"]
    with pytest.raises(flags.IllegalFlagValueError, match="format"):
        parse("--format=bogus", *good)
    with pytest.raises(flags.IllegalFlagValueError, match="input"):
        parse("--format=eyepacs", f"--output={tmp_path}")
    with pytest.raises(flags.IllegalFlagValueError, match="existing directory"):
        parse("--format=eyepacs", f"--input={tmp_path / 'missing'}", f"--output={tmp_path}")
    options = convert.options_from_flags(parse("--format=voc", *good, "--reader_arg=split=val"))
    assert options.reader_args == (("split", "val"),)
    assert options.resolved().crop_retina is False  # photos, not fundus images


def test_command_line_end_to_end(eyepacs_set, tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "coopseg.cli.convert", "--format=eyepacs",
               f"--input={eyepacs_set}", f"--output={tmp_path / 'out'}", "--size=32"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"convert train \[#+\] 4/4 .* skipped 0", done.stderr), done.stderr
    assert "4 records in 1 shard(s)" in done.stdout
    # It ends with the next step: the held-out split still to convert, then the command
    # that trains on what was written.
    out = tmp_path / "out"
    assert "next: convert a held-out split too (--split=val" in done.stdout
    assert (f"next: coopseg-train --mode=clf_only --graded_format=tfrecord --graded_train={out}"
            in done.stdout)
    assert convert.next_step_lines("masks", "/o", {"train", "val"}, None)[0] == (
        "next: coopseg-train --mode=seg_only --masks_format=tfrecord --masks_train=/o "
        "--masks_val=/o")
    failed = subprocess.run(command[:-1] + ["--size=48"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert failed.returncode != 0
    assert "coopseg-convert: error:" in failed.stderr and "--overwrite" in failed.stderr


def test_label_map_set_keeps_ignore_and_derives_image_labels(tmp_path):
    root = tmp_path / "labelled"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    label = np.zeros((60, 90), np.uint8)
    label[20:40, 40:50] = 2
    label[:, 85:] = 255  # an unannotated strip
    cv2.imwrite(str(root / "images" / "a.png"), _fundus())
    cv2.imwrite(str(root / "labels" / "a.png"), label)
    out = tmp_path / "out"
    entry = _run(_options("generic", root, out, crop_retina=False))["splits"]["train"]
    assert entry["count"] == 1 and entry["class_pixel_counts"]["soft_exudate"] > 0
    parsed = tfrecords.parse_example(next(iter(tf.data.TFRecordDataset(
        str(out / "train-00000-of-00001.tfrecord")))))
    assert parsed["image/labels"].numpy().tolist() == [0, 1, 0, 0, 0, 0]
    mask = tfrecords.decode_mask(parsed["mask/encoded"]).numpy()
    # 90x60 padded to 90x90 (ignore rows above and below), resized to 32x32.
    assert set(np.unique(mask)) == {0, 2, 255}
    assert (mask[0] == 255).all() and (mask[16, -1] == 255) and mask[16, 0] == 0


def test_unknown_reader_argument_is_a_config_error(eyepacs_set, tmp_path):
    options = _options("eyepacs", eyepacs_set, tmp_path / "out", reader_args=(("colour", "x"),))
    with pytest.raises(ConfigError, match="labels_csv"):
        _run(options)
