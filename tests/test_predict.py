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


def _copy_export_trained_on_synthetic(export, root):
    """The export with its training-data record saying: synthetic images only."""
    import shutil
    copy = str(root / "synthetic_export")
    shutil.copytree(export, copy)
    meta_path = os.path.join(copy, "assets", "coopseg.json")
    meta = json.load(open(meta_path))
    meta["training_data"] = {"sets": {"masks_train": {
        "path": "/data/synthetic/lesions_train", "format": "generic", "synthetic": True}},
        "real_photos": False}
    json.dump(meta, open(meta_path, "w"))
    return copy


def test_export_is_readable_by_other_users_and_records_its_training_data(trained):
    cfg, _, export = trained
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(export).st_mode & 0o777 == 0o777 & ~mask  # 0755 under umask 022
    for name in ("saved_model.pb", os.path.join("assets", "coopseg.json")):
        assert os.stat(os.path.join(export, name)).st_mode & 0o777 == 0o666 & ~mask
    record = json.load(open(os.path.join(export, "assets", "coopseg.json")))["training_data"]
    assert record == {"sets": {}, "real_photos": None}  # the fixture names no data


def test_training_data_record_tells_synthetic_from_real(tmp_path):
    from data_pipelines.provenance import describe_training_data, training_data_record
    from data_pipelines.synthetic import use_synthetic_data
    cfg = experiment("tiny")
    use_synthetic_data(cfg, str(tmp_path / "synthetic"), "tiny")
    record = training_data_record(cfg.data)
    assert record["real_photos"] is False and set(record["sets"]) == {"graded_train",
                                                                      "masks_train"}
    assert "never saw a real photo" in describe_training_data(record)
    os.makedirs(tmp_path / "clinic" / "images")
    cfg.data.masks_train = str(tmp_path / "clinic")
    assert training_data_record(cfg.data)["real_photos"] is True


def test_predict_says_when_the_model_never_saw_a_real_photo_and_fails_on_nothing(trained,
                                                                                tmp_path):
    _, _, export = trained
    synthetic = _copy_export_trained_on_synthetic(export, tmp_path)
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    photos = tmp_path / "photos"
    os.makedirs(photos)
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[..., :3], rgba[20:60, 20:60, 3] = 200, 255  # opaque square, transparent elsewhere
    cv2.imwrite(str(photos / "transparent.png"), rgba)
    open(photos / "broken.jpg", "wb").write(b"\xff\xd8 not a jpeg")

    def predict(folder, out):
        return subprocess.run([sys.executable, "-m", "coopseg.cli.predict",
                               f"--model={synthetic}", f"--input={folder}",
                               f"--output_dir={out}"], capture_output=True, text=True,
                              timeout=240, env=env, cwd=ROOT)

    res = predict(photos, tmp_path / "out")
    assert res.returncode == 0, res.stderr[-2000:]  # one of two predicted: success
    assert "never saw a real photo" in res.stdout and "synthetic images only" in res.stdout
    rows = {row["image"]: row for row in _read_csv(str(tmp_path / "out" / "predictions.csv"))}
    assert rows["transparent.png"]["model_saw_real_photos"] == "0"
    assert "75.0% of pixels not opaque) composited on black" in rows["transparent.png"]["reason"]
    os.remove(photos / "transparent.png")
    res = predict(photos, tmp_path / "out2")  # nothing readable: nothing predicted
    assert res.returncode != 0 and "no image was predicted" in res.stderr, res.stderr[-2000:]
    assert os.path.isfile(tmp_path / "out2" / "predictions.csv")  # with the reason per file


def test_transparency_is_composited_on_black(tmp_path):
    from data_pipelines.imageio import read_image, read_image_with_note
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 255
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 128
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, rgba)
    image, note = read_image_with_note(path)
    assert image[0, 0].tolist() == [0, 0, 0] and image[0, 1].tolist() == [100, 100, 100]
    assert image[3, 3].tolist() == [200, 200, 200] and "12.5% of pixels" in note
    rgba[..., 3] = 255
    cv2.imwrite(path, rgba)
    assert read_image_with_note(path)[1] == "" and read_image(path)[0, 0].tolist() == [200] * 3


def test_export_cli_keeps_the_terminal_clean(trained, tmp_path):
    _, run, _ = trained
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT
    res = subprocess.run([sys.executable, "-m", "coopseg.cli.export", f"--model_dir={run}",
                          f"--export_dir={tmp_path / 'export'}"], capture_output=True,
                         text=True, timeout=240, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "SavedModel written to" in res.stdout and "trained on: unknown" not in res.stdout
    for noise in ("TensorFlow Addons", "Assets written to", "unsupported characters",
                  "fingerprint", ".export-"):
        assert noise not in res.stderr, (noise, res.stderr[-3000:])


def test_a_wide_photo_keeps_a_round_retina_and_its_own_shape(trained):
    from coopseg.serving.photo_preprocessing import PhotoPreprocessing
    from coopseg.evaluation.visualize import overlay_rgb
    from coopseg.serving.predict_folder import overlay_image, prediction_row, prepare_photo
    from data_pipelines.augment import photo_region
    cfg, _, export = trained
    photo = np.zeros((683, 1024, 3), np.uint8)  # an EyePACS-shaped frame
    cv2.circle(photo, (512, 341), 330, (180, 90, 40), -1)
    path = os.path.join(os.path.dirname(export), "wide.png")
    cv2.imwrite(path, photo[..., ::-1])
    size = cfg.model.input_size
    prepared = prepare_photo(path, size, PhotoPreprocessing(), overlay_size=512)
    lit = prepared.model_input.max(axis=2) > 20
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert abs(width - height) <= 1, (height, width)  # stretched, it was 0.67 as wide
    assert prepared.display.shape == (342, 512, 3) and prepared.view_shape == (683, 1024)
    predictor = load_predictor(export)
    out = predictor(prepared.model_input[None])
    row = prediction_row(prepared, "wide.png", out, 0, predictor)
    overlay = overlay_image(prepared, "wide.png", row, out, 0, predictor)
    # The overlay's photo part is the 512 x 342 photo with the class map of the photo's
    # part of the square view (the padding rows cut away), the legend to its right.
    y0, y1, x0, x1 = photo_region(size, 683, 1024)
    assert (y1 - y0) / (x1 - x0) == pytest.approx(683 / 1024, abs=0.02) and x1 - x0 == size
    expected = overlay_rgb(prepared.display, out["class_map"][0][y0:y1, x0:x1],
                           len(predictor.class_names))
    np.testing.assert_array_equal(overlay[:342, :512], expected)
    assert overlay.shape[1] > 512
