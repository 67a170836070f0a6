"""coopseg-predict: a folder of photos -> one CSV row per file and lesion overlays."""
import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, to_dict
from coopseg.evaluation.visualize import LEGEND_WARNING_BAND
from coopseg.serving.export import export_saved_model
from coopseg.serving.predict_folder import PredictOptions, list_inputs, predict_folder
from coopseg.serving.predictor import average_with_mirror, load_predictor
from data_pipelines.synthetic import render_fundus
from experiments.scales import experiment
from tests.helpers import built_system_with_bn_statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny JointSeg as both a run directory (checkpoint) and a SavedModel."""
    root = tmp_path_factory.mktemp("predict")
    cfg = experiment("tiny", run={"model_dir": str(root / "run")}).validate()
    system, _ = built_system_with_bn_statistics(cfg)
    run = root / "run"
    os.makedirs(run / "checkpoints")
    (run / "config.json").write_text(json.dumps(to_dict(cfg)))
    tf.train.Checkpoint(**system.parts).write(str(run / "checkpoints" / "ckpt-1"))
    # tf.train.latest_checkpoint reads the index file the CheckpointManager keeps.
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    export = export_saved_model(system, cfg, str(root / "export"))
    return cfg, str(run), export


def _photo_folder(root):
    """Mixed sizes and formats, a corrupt JPEG, a text file and a hidden file."""
    os.makedirs(root)
    big, _ = render_fundus(1, 3, 200)
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[20:220, 60:260] = big
    cv2.imwrite(os.path.join(root, "a_wide.jpg"), frame[..., ::-1])
    small, _ = render_fundus(2, 0, 64)
    cv2.imwrite(os.path.join(root, "b_small.png"), small[..., ::-1])
    gray = cv2.cvtColor(render_fundus(3, 2, 90)[0], cv2.COLOR_RGB2GRAY)
    cv2.imwrite(os.path.join(root, "c_gray.png"), gray)
    data = open(os.path.join(root, "a_wide.jpg"), "rb").read()
    open(os.path.join(root, "d_corrupt.jpg"), "wb").write(data[: len(data) // 2])
    open(os.path.join(root, "e_notes.txt"), "w").write("visit notes, not a photo\n")
    open(os.path.join(root, ".DS_Store"), "wb").write(b"\0\1")
    return root


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_folder_gives_one_row_per_file_with_reasons_and_overlays(trained, tmp_path):
    cfg, _, export = trained
    folder = _photo_folder(str(tmp_path / "photos"))
    out = str(tmp_path / "out")
    inputs = list_inputs([folder, str(tmp_path / "missing.jpg")])
    # Cropped as for a model trained on coopseg-convert's retina-cropped records.
    summary = predict_folder(load_predictor(export), inputs, out,
                             PredictOptions(batch_size=2, crop_retina=True))
    rows = _read_csv(os.path.join(out, "predictions.csv"))
    assert [r["image"] for r in rows] == ["a_wide.jpg", "b_small.png", "c_gray.png", "d_corrupt.jpg",
                                          "e_notes.txt", str(tmp_path / "missing.jpg")]
    status = {r["image"]: (r["status"], r["reason"]) for r in rows}
    assert status["d_corrupt.jpg"] == ("unreadable", "truncated JPEG (no end-of-image marker)")
    assert status["e_notes.txt"][0] == "unreadable" and "not a decodable image" in status["e_notes.txt"][1]
    assert "No such file" in status[str(tmp_path / "missing.jpg")][1]
    assert summary["predicted"] == 3 and summary["unreadable"] == 3
    assert not os.path.exists(os.path.join(out, "predictions.csv.partial"))

    s = cfg.model.input_size
    lesions = cfg.data.class_names[1:]
    for row in rows[:3]:
        assert row["status"] == "ok" and row["retina_found"] == "1"
        probs = np.array([float(row[f"p_grade_{g}"]) for g in range(5)])
        assert abs(probs.sum() - 1) < 1e-3 and int(row["grade"]) == probs.argmax()
        assert abs(float(row["p_referable"]) - probs[2:].sum()) < 1e-3
        lesion_pixels = sum(int(row[f"pixels_{name}"]) for name in lesions)
        assert 0 <= lesion_pixels <= s * s
        overlay = cv2.imread(os.path.join(out, row["overlay"]))
        # The retina crop (at most --overlay_size) plus the legend panel to its right.
        assert overlay is not None and overlay.shape[1] > overlay.shape[0] >= 64
    assert rows[0]["overlay"] == os.path.join("overlays", "a_wide.png")
    # The 320 x 240 frame was cropped to its disc (176-192 px across; uncropped it would
    # be shown 320 px square). The legend adds width only.
    assert 170 <= cv2.imread(os.path.join(out, rows[0]["overlay"])).shape[0] <= 200
    assert all(r["overlay"] == "" for r in rows[3:])


def _ungradable_folder(root):
    """One photo per gradability case, each clearly past its threshold."""
    os.makedirs(root)
    photo, _ = render_fundus(4, 1, 160)  # larger than the tiny model's 96 px input
    frame = np.zeros((200, 240, 3), np.uint8)
    frame[20:180, 40:200] = photo
    cases = {"black.png": np.zeros((200, 240, 3), np.uint8),
             "dark.png": (frame * 0.2).astype(np.uint8),  # mean ~14: the disc still found
             "few_levels.png": (frame * 0.04).astype(np.uint8),  # 0..~7: nothing to find
             "tiny.png": cv2.resize(photo, (40, 40), interpolation=cv2.INTER_AREA),
             "normal.png": frame}
    for name, image in cases.items():
        cv2.imwrite(os.path.join(root, name), image[..., ::-1])
    return root


def test_checkpoint_and_saved_model_predict_the_same(trained, tmp_path):
    _, run, export = trained
    folder = _photo_folder(str(tmp_path / "photos"))
    _ungradable_folder(os.path.join(folder, "quality"))
    options = PredictOptions(overlays=False)
    for name, model in (("ckpt", run), ("saved", export)):
        predict_folder(load_predictor(model), list_inputs([folder], recursive=True),
                       str(tmp_path / name), options)
    a, b = (_read_csv(str(tmp_path / n / "predictions.csv")) for n in ("ckpt", "saved"))
    assert a == b
    # The comparison covers the gradability columns, both ways.
    assert {r["gradable"] for r in a if r["status"] == "ok"} == {"0", "1"}


@pytest.mark.parametrize("crop", [False, True])
def test_ungradable_photos_are_flagged_and_still_predicted(trained, tmp_path, crop):
    cfg, _, export = trained
    folder = _ungradable_folder(str(tmp_path / "photos"))
    out = str(tmp_path / "out")
    # crop=False is the tiny model's own preprocessing (trained on whole synthetic
    # frames); crop=True that of a model trained on retina-cropped records.
    summary = predict_folder(load_predictor(export), list_inputs([folder]), out,
                             PredictOptions(crop_retina=crop))
    with open(os.path.join(out, "predictions.csv"), newline="") as f:
        header = next(csv.reader(f))
    assert header[3:6] == ["retina_found", "gradable", "gradable_reason"]
    rows = {r["image"]: r for r in _read_csv(os.path.join(out, "predictions.csv"))}
    assert summary["predicted"] == 5 and summary["ungradable"] == 4

    black = rows["black.png"]
    assert (black["retina_found"], black["gradable"]) == ("0", "0")
    assert black["gradable_reason"].split("; ")[0] == "no retina found"
    assert black["reason"] == ("no retina found: the whole frame was used" if crop else "")
    assert rows["dark.png"]["retina_found"] == "1" and rows["dark.png"]["gradable"] == "0"
    assert rows["dark.png"]["gradable_reason"].startswith("too dark: retina mean brightness")
    assert "; " not in rows["dark.png"]["gradable_reason"]
    assert rows["few_levels.png"]["gradable"] == "0"
    assert "too dark" in rows["few_levels.png"]["gradable_reason"]
    assert rows["tiny.png"]["gradable"] == "0"
    assert rows["tiny.png"]["gradable_reason"].startswith("too small: retina ")
    assert (rows["normal.png"]["retina_found"], rows["normal.png"]["gradable"],
            rows["normal.png"]["gradable_reason"]) == ("1", "1", "")

    for row in rows.values():  # never hidden: every photo keeps its prediction and overlay
        probs = np.array([float(row[f"p_grade_{g}"]) for g in range(cfg.model.num_grades)])
        assert abs(probs.sum() - 1) < 1e-3 and int(row["grade"]) == probs.argmax()
        assert row["pixels_microaneurysm"] != "" and row["overlay"]
    # The legend of an ungradable photo carries the warning on its red band (PNG is
    # lossless, so the band's exact colour can be counted); a gradable one has none.
    band = []
    for name in ("black.png", "normal.png"):
        overlay = cv2.imread(os.path.join(out, rows[name]["overlay"]))[..., ::-1]
        band.append(int((overlay == LEGEND_WARNING_BAND).all(-1).sum()))
    assert band[0] > 1000 and band[1] == 0


def test_flip_tta_averages_the_photo_and_its_mirror(trained):
    _, _, export = trained
    predictor = load_predictor(export)
    s = predictor.input_size
    images = np.stack([render_fundus(i, 2, s)[0] for i in range(2)]).astype("float32")
    plain = predictor(images)
    mirrored = predictor(images[:, :, ::-1])
    tta = predictor(images, flip_tta=True)
    np.testing.assert_allclose(tta["grade_probabilities"],
                               (plain["grade_probabilities"] + mirrored["grade_probabilities"]) / 2,
                               atol=1e-6)
    seg = (plain["segmentation_probabilities"] + mirrored["segmentation_probabilities"][:, :, ::-1]) / 2
    np.testing.assert_allclose(tta["segmentation_probabilities"], seg, atol=1e-6)
    np.testing.assert_array_equal(tta["class_map"], seg.argmax(-1))
    # The model is not flip-invariant, so TTA does change its answer.
    assert np.abs(tta["grade_probabilities"] - plain["grade_probabilities"]).max() > 1e-6


def test_tta_needs_probabilities_not_just_a_class_map():
    out = {"class_map": np.zeros((1, 4, 4), np.int32)}
    with pytest.raises(ConfigError, match="probabilities"):
        average_with_mirror(out, out)


def test_load_predictor_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="neither a SavedModel"):
        load_predictor(str(tmp_path))


def test_cli_writes_the_csv_and_reports_unreadable_files(trained, tmp_path):
    _, _, export = trained
    folder = _photo_folder(str(tmp_path / "photos"))
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    res = subprocess.run([sys.executable, "-m", "coopseg.cli.predict", f"--model={export}",
                          f"--input={folder}", f"--output_dir={tmp_path / 'out'}", "--tta"],
                         capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "3 predicted, 2 unreadable" in res.stdout
    assert len(_read_csv(str(tmp_path / "out" / "predictions.csv"))) == 5
    res = subprocess.run([sys.executable, "-m", "coopseg.cli.predict", f"--model={tmp_path}",
                          f"--input={folder}"], capture_output=True, text=True, timeout=240,
                         env=env, cwd=ROOT)
    assert res.returncode != 0 and "coopseg-predict: error:" in res.stderr
    assert "Traceback" not in res.stderr


def test_preprocessing_follows_the_training_data(tmp_path):
    from coopseg.serving.photo_preprocessing import PhotoPreprocessing, from_config
    from data_pipelines.tfrecords import write_manifest
    cfg = experiment("tiny")
    cfg.data.graded_format, cfg.data.graded_train = "eyepacs", str(tmp_path / "folder")
    assert from_config(cfg) == PhotoPreprocessing()  # folders feed whole frames
    root = tmp_path / "records"
    os.makedirs(root)
    write_manifest(str(root), {"splits": {"train": {"options": {
        "crop_retina": True, "retina_threshold": 14, "graham": True}}}})
    cfg.data.graded_format, cfg.data.graded_train = "tfrecord", str(root)
    assert from_config(cfg) == PhotoPreprocessing(crop_retina=True, retina_threshold=14,
                                                  graham=True)
    options = PredictOptions(graham=False)
    assert options.resolve(from_config(cfg)) == PhotoPreprocessing(True, 14, False)
