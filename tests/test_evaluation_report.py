"""coopseg-evaluate --report: hand-computed numbers from fake models whose outputs the
test controls, the files written, and one end-to-end CLI run on a tiny run directory."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.evaluation import metric_tables as mr
from coopseg.evaluation import passes as passes
from coopseg.evaluation import report as er
from coopseg.evaluation import report_output
from coopseg.evaluation.evaluate import evaluate_system
from coopseg.models.system import ModelSystem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("background", "exudate", "haemorrhage")

# Grade probabilities per image (rows sum to 1) and the true grades.
PROBS = np.array([
    [0.25, 0.65, 0.05, 0.03, 0.02],   # grade 0: p(>=2) 0.10, p(>=1) 0.75
    [0.10, 0.30, 0.40, 0.10, 0.10],   # grade 1: 0.60, 0.90
    [0.05, 0.15, 0.50, 0.20, 0.10],   # grade 2: 0.80, 0.95
    [0.20, 0.40, 0.10, 0.20, 0.10],   # grade 3: 0.40, 0.80
    [0.02, 0.08, 0.10, 0.30, 0.50],   # grade 4: 0.90, 0.98
    [0.30, 0.40, 0.10, 0.10, 0.10],   # grade 1: 0.30, 0.70
], np.float32)
GRADES = np.array([0, 1, 2, 3, 4, 1], np.int32)


class Passthrough(tf.keras.Model):
    """Its input, reshaped, is its output: the test writes the logits into the images."""

    def __init__(self, flatten: bool):
        super().__init__()
        self.flatten = flatten

    def call(self, x, training=False):
        return tf.reshape(x, [tf.shape(x)[0], -1]) if self.flatten else tf.identity(x)


def _segmentation_data():
    """4 images, 6x6, 3 classes. Logits = 4 * one-hot(prediction) + noise, so the
    class map is the planned one and pixel scores are distinct."""
    truth = np.zeros((4, 6, 6), np.int32)
    pred = np.zeros((4, 6, 6), np.int32)
    truth[0, :2, :3] = 1; pred[0] = truth[0]                      # perfect: Dice 1
    truth[1, 3:, 3:] = 2                                          # missed: Dice 0
    # image 2: background in both -> Dice undefined
    # image 3: 2 of 4 true pixels hit, one true pixel given the wrong lesion, one false
    # alarm: 2 * 2 / (4 predicted + 4 true) = 0.5 (a wrong lesion class is no hit).
    truth[3, 0, :4] = 1; pred[3, 0, :2] = 1; pred[3, 0, 2] = 2; pred[3, 4, 0] = 2
    truth[:, 5, 5] = 255                                          # ignored everywhere
    noise = np.random.default_rng(0).normal(scale=0.5, size=truth.shape + (3,))
    logits = (4.0 * np.eye(3)[pred] + noise).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((logits, truth)).batch(2), logits, truth


def _classification_data():
    images = np.log(PROBS).reshape(6, 1, 1, 5)
    return tf.data.Dataset.from_tensor_slices((images, GRADES)).batch(4)


class ClassMapSystem(ModelSystem):
    """A system whose class map is not the argmax of a softmax (as DecoupledNet's)."""
    predicts_by_softmax = False

    def predict_classes(self, images):
        return tf.argmax(images, -1, output_type=tf.int32)


def _system(**kwargs):
    defaults = dict(method="fake", clf_model=Passthrough(flatten=True),
                    seg_model=Passthrough(flatten=False))
    return ModelSystem(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def report():
    seg_val, _, _ = _segmentation_data()
    return er.build_report(_system(), _classification_data(), seg_val, 5, CLASSES,
                           er.ReportOptions(grid_images=1, aupr_bins=1000))


def test_referable_dr_numbers_by_hand(report):
    ref = report.metrics["classification"]["referable_dr"]
    # Referable truth (grade >= 2): images 2, 3, 4. Predicted (p >= 0.5): images 1, 2, 4.
    assert (ref["true_positives"], ref["false_negatives"]) == (2, 1)
    assert (ref["true_negatives"], ref["false_positives"]) == (2, 1)
    assert ref["sensitivity"] == pytest.approx(2 / 3)
    assert ref["specificity"] == pytest.approx(2 / 3)
    # Positives score 0.8, 0.4, 0.9; negatives 0.1, 0.6, 0.3: 3 + 2 + 3 of 9 pairs ordered.
    assert ref["roc_auc"] == pytest.approx(8 / 9)
    assert (ref["positives"], ref["negatives"]) == (3, 3)
    # Any DR: the one negative (0.75) outranks only the positive at 0.70: 4 of 5 pairs.
    assert report.metrics["classification"]["any_dr"]["roc_auc"] == pytest.approx(4 / 5)
    assert report.metrics["classification"]["top1_accuracy"] == pytest.approx(3 / 6)


def test_threshold_moves_the_operating_point_only():
    strict = er.referable_dr(PROBS, GRADES, threshold=0.85)
    # Only image 4 (0.90) passes: sensitivity 1/3, specificity 3/3, same AUC.
    assert strict["sensitivity"] == pytest.approx(1 / 3) and strict["specificity"] == 1.0
    assert strict["roc_auc"] == pytest.approx(8 / 9)


def test_report_equals_evaluate_system(report):
    seg_val, _, _ = _segmentation_data()
    reference = evaluate_system(_system(), _classification_data(), seg_val, 5, CLASSES)
    seg, clf = report.metrics["segmentation"], report.metrics["classification"]
    for key in ("miou", "miou_no_background", "iou", "dice", "confusion_matrix"):
        assert seg[key] == reference["segmentation"][key], key
    for key in ("top1_accuracy", "top2_accuracy", "binary_accuracy", "quadratic_kappa",
                "confusion_matrix", "count"):
        assert clf[key] == reference["classification"][key], key


def test_aupr_per_image_dice_and_extremes(report):
    _, logits, truth = _segmentation_data()
    probs = tf.nn.softmax(logits).numpy()
    valid = truth != 255
    seg = report.metrics["segmentation"]
    for c, name in enumerate(CLASSES[1:], start=1):
        # Every pixel of this small set is in the exactly ranked top: the exact AUPR.
        want = mr.average_precision(truth[valid] == c, probs[..., c][valid].astype(np.float64))
        assert seg["aupr"][name] == pytest.approx(want, abs=1e-9)
        assert seg["aupr_binning_error_bound"][name] == 0.0
        assert seg["pr_curves"][name]["recall"][-1] == 0.0
    assert seg["mean_aupr"] == pytest.approx(np.mean(list(seg["aupr"].values())))
    dice = seg["per_image_dice"]
    assert (dice["scored_images"], dice["undefined_images"]) == (3, 1)
    assert dice["mean"] == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert dice["worst"] == [{"index": 1, "dice": 0.0}]
    assert dice["best"] == [{"index": 0, "dice": 1.0}]
    grid = report.figures["segmentation_grid"]
    assert grid.dtype == np.uint8 and grid.shape[0] > 2 * 6


def test_extreme_images_are_bounded_and_disjoint():
    def thumb(score, index):
        return passes.Thumbnail(score, index, np.zeros((1, 1, 3), np.uint8), None, None)

    scores = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8]
    kept = passes.ExtremeImages(2)
    for i, s in enumerate(scores):
        if kept.wants(s, i):
            kept.add(thumb(s, i))
    worst, best = kept.worst_and_best()
    assert [t.score for t in worst] == [0.1, 0.2] and [t.score for t in best] == [0.9, 0.8]
    few = passes.ExtremeImages(2)
    for i, s in enumerate([0.4, 0.6, 0.5]):
        few.add(thumb(s, i))
    worst, best = few.worst_and_best()
    assert [t.index for t in worst] == [0, 2] and [t.index for t in best] == [1]


def _image_links(markdown):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_files_tensorboard_and_atomic_replace(report, tmp_path):
    out = tmp_path / "report"
    paths = report_output.write_report(report, str(out), run={"name": "fake", "step": 7})
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["run"]["step"] == 7
    assert metrics["classification"]["referable_dr"]["sensitivity"] == pytest.approx(2 / 3)
    markdown = (out / "report.md").read_text()
    links = _image_links(markdown)
    assert set(links) == {"pr_curves.png", "segmentation_confusion.png", "segmentation_grid.png",
                          "roc.png", "grade_confusion.png"}
    assert all((out / link).is_file() for link in links)
    assert all(os.path.isfile(p) for p in paths)
    assert "| exudate |" in markdown and "How these were computed" in markdown
    # Writing again replaces the report whole and leaves no temporary directory.
    (out / "stale.png").write_bytes(b"x")
    report_output.write_report(report, str(out))
    assert not (out / "stale.png").exists()
    assert sorted(os.listdir(tmp_path)) == ["report"]
    # A directory that is not a report (here: a run directory) is never replaced.
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not an earlier coopseg report"):
        report_output.write_report(report, str(run_dir))
    assert (run_dir / "checkpoints").is_dir()

    logdir = str(tmp_path / "tb")
    report_output.log_to_tensorboard(report, logdir, step=7)
    (events,) = os.listdir(logdir)
    seen = {}
    for record in tf.data.TFRecordDataset(os.path.join(logdir, events)):
        event = tf.compat.v1.Event.FromString(record.numpy())
        for value in event.summary.value:
            seen[value.tag] = (event.step, value)
    step, value = seen["evaluation/classification/referable_dr/sensitivity"]
    assert step == 7 and tf.make_ndarray(value.tensor) == pytest.approx(2 / 3)
    assert "evaluation/segmentation/aupr/exudate" in seen and "evaluation/roc" in seen


def test_partial_systems_get_the_sections_they_can(tmp_path):
    seg_val, _, _ = _segmentation_data()
    # DecoupledNet-like: a class map from its own inference, so no pixel scores for AUPR.
    decoupled = ClassMapSystem(method="fake", clf_model=None,
                               seg_model=Passthrough(flatten=False))
    rep = er.build_report(decoupled, _classification_data(), seg_val, 5, CLASSES,
                          er.ReportOptions(grid_images=1))
    seg = rep.metrics["segmentation"]
    assert seg["aupr"] is None and "predict_classes" in seg["aupr_unavailable"]
    assert seg["miou"] is not None and "pr_curves" not in rep.figures
    assert "classification" in rep.metrics["unavailable"] and "aupr" in rep.metrics["unavailable"]
    report_output.write_report(rep, str(tmp_path / "r"))
    assert "AUPR unavailable" in (tmp_path / "r" / "report.md").read_text()
    # Two grades: no referable DR (grade >= 2), the rest is reported.
    two = np.log(np.array([[0.8, 0.2], [0.3, 0.7]], np.float32)).reshape(2, 1, 1, 2)
    clf_val = tf.data.Dataset.from_tensor_slices((two, np.array([0, 1], np.int32))).batch(2)
    rep = er.build_report(_system(seg_model=None), clf_val, None, 2, CLASSES)
    assert "referable_dr" in rep.metrics["unavailable"]
    assert rep.metrics["classification"]["any_dr"]["roc_auc"] == 1.0
    assert "segmentation" in rep.metrics["unavailable"]
    with pytest.raises(ConfigError, match="referable_threshold"):
        er.ReportOptions(referable_threshold=1.5).validate()


# ------------------------------------------------------------------ end to end (CLI)


def _tiny_run_dir(root):
    """A run directory as coopseg-train leaves it (config.json + checkpoint at step 7)
    for the tiny JointSeg model on a tiny synthetic set; the weights are untrained
    (BN statistics moved once), which is all the report needs."""
    from coopseg.config import to_dict
    from coopseg.models.registry import build_system
    from data_pipelines.synthetic import ensure_dataset
    from experiments.scales import experiment
    cfg = experiment("tiny", run=dict(model_dir=str(root / "run")))
    data = root / "data"
    ensure_dataset(str(data), num_graded_train=2, num_graded_val=10, num_masks_train=2,
                   num_masks_val=6, image_size=cfg.data.resize_size, seed=0)
    d = cfg.data
    d.graded_format, d.masks_format = "eyepacs", "generic"
    d.graded_train, d.graded_val = str(data / "graded_train"), str(data / "graded_val")
    d.masks_train, d.masks_val = str(data / "lesions_train"), str(data / "lesions_val")
    cfg.validate()
    system = build_system(cfg)
    s = cfg.model.input_size
    system.joint_model(tf.random.uniform([2, s, s, 3]), training=True)
    os.makedirs(cfg.run.model_dir)
    with open(os.path.join(cfg.run.model_dir, "config.json"), "w") as f:
        json.dump(to_dict(cfg), f)
    checkpoint = tf.train.Checkpoint(step=tf.Variable(7, dtype=tf.int64), **system.parts)
    tf.train.CheckpointManager(checkpoint, os.path.join(cfg.run.model_dir, "checkpoints"),
                               max_to_keep=1).save(checkpoint_number=7)
    return cfg.run.model_dir


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "coopseg.cli.evaluate", *args],
                          capture_output=True, text=True, timeout=240, env=env, cwd=ROOT)


def test_cli_report_end_to_end(tmp_path):
    model_dir = _tiny_run_dir(tmp_path)
    out = tmp_path / "report"
    res = _cli(f"--model_dir={model_dir}", f"--report={out}", "--grid_images=2",
               "--aupr_bins=200", "--batch_size=4")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "classification/referable_dr/sensitivity" in res.stdout
    assert "segmentation/aupr/haemorrhage" in res.stdout and str(out / "report.md") in res.stdout
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["run"]["step"] == 7 and metrics["settings"]["aupr_bins"] == 200
    assert metrics["segmentation"]["num_images"] == 6 and metrics["classification"]["count"] == 10
    assert len(metrics["segmentation"]["per_image_dice"]["worst"]) == 2
    assert all((out / link).is_file() for link in _image_links((out / "report.md").read_text()))
    assert os.listdir(os.path.join(model_dir, "logs", "evaluation"))
    assert not os.path.exists(os.path.join(model_dir, "evaluation.json"))  # --report only
    # Refusing to replace the run directory is tested in-process
    # (test_files_tensorboard_and_atomic_replace): a second CLI process costs ~5 s.
