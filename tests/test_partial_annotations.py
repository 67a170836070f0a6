"""Partially annotated mask sets: the partial label, the marginal loss, metrics that count a
class only where it was annotated, and several sets in one run."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, partial_label
from coopseg.evaluation import pixel_ranking as pr
from coopseg.evaluation.metrics import SegmentationConfusion
from coopseg.models.losses import segmentation_loss
from coopseg.training.examples import mask_examples
from data_pipelines.imageio import read_mask_example
from data_pipelines.masks import load_mask_set
from data_pipelines.records import DataError
from experiments.scales import experiment

CLASSES = ("background", "exudate", "haemorrhage", "microaneurysm")
EXUDATES_ONLY = partial_label((1, 0, 0))  # 128 + 0b001


def test_partial_label_encodes_the_annotated_classes():
    assert EXUDATES_ONLY == 129 and partial_label((0, 1, 1)) == 134
    with pytest.raises(ConfigError, match="at least one"):
        partial_label((0, 0, 0))
    with pytest.raises(ConfigError, match="up to 7"):
        partial_label((1,) * 8)


def test_marginal_loss_never_teaches_absent_for_an_unannotated_class():
    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 1, 2, 4)), dtype=tf.float32)
    masks = tf.constant([[[1, EXUDATES_ONLY]]])
    with tf.GradientTape() as tape:
        loss = segmentation_loss(masks, logits, 1)
    p = tf.nn.softmax(logits).numpy()[0, 0]
    # Pixel 0 is an exudate; pixel 1 is background, haemorrhage or microaneurysm.
    want = (-np.log(p[0, 1]) - np.log(p[1, 0] + p[1, 2] + p[1, 3])) / 2
    assert float(loss) == pytest.approx(want, rel=1e-6)
    grad = tape.gradient(loss, logits).numpy()[0, 0, 1]
    assert grad[1] > 0  # the annotated class is pushed down where it was not marked ...
    assert (grad[[0, 2, 3]] < 0).all()  # ... every class it may be is pushed up
    # With plain background (what a partial set used to give) haemorrhage is pushed down.
    with tf.GradientTape() as tape:
        loss = segmentation_loss(tf.constant([[[1, 0]]]), logits, 1)
    assert tape.gradient(loss, logits).numpy()[0, 0, 1, 2] > 0


def test_metrics_count_a_class_only_where_it_was_annotated():
    labels = np.array([[[1, EXUDATES_ONLY, EXUDATES_ONLY, 2]]], np.int32)
    predictions = np.array([[[1, 1, 2, 2]]], np.int32)
    confusion = SegmentationConfusion(4)
    confusion.update_state(labels, predictions)
    cm = confusion.confusion.numpy()
    # Unmarked pixel predicted exudate: a false positive of exudate (against background).
    # Unmarked pixel predicted haemorrhage: unknown, not counted.
    assert cm[1, 1] == 1 and cm[0, 1] == 1 and cm[3, 2] == 0 and cm[2, 2] == 1
    assert cm.sum() == 3
    probs = np.full((1, 1, 4, 4), 0.25, np.float32)
    histogram = pr.PixelScoreHistogram(4, num_bins=10, spacing="linear", exact_top=0)
    histogram.update_state(labels, probs)
    counts = histogram.counts()  # [class - 1, bin, (negatives, positives)]
    assert counts[0].sum(axis=0).tolist() == [3, 1]  # exudate: both unmarked pixels negative
    assert counts[1].sum(axis=0).tolist() == [1, 1]  # haemorrhage: unmarked pixels unknown


def _mask_set(root, annotates=None, exudate=True):
    os.makedirs(os.path.join(root, "images"))
    image = np.full((16, 16, 3), 80, np.uint8)
    cv2.imwrite(os.path.join(root, "images", "a.png"), image)
    if exudate:
        mask = np.zeros((16, 16), np.uint8)
        mask[2:5, 2:5] = 255
        os.makedirs(os.path.join(root, "masks", "exudate"))
        cv2.imwrite(os.path.join(root, "masks", "exudate", "a.png"), mask)
    else:
        os.makedirs(os.path.join(root, "masks"))
    if annotates is not None:
        with open(os.path.join(root, "annotates.txt"), "w") as f:
            f.write("\n".join(annotates) + "\n")


def test_a_set_declares_what_it_annotates(tmp_path):
    _mask_set(str(tmp_path / "ex"), annotates=["exudate"])
    (example,) = load_mask_set(str(tmp_path / "ex"), CLASSES)
    assert example.annotated == (1, 0, 0) and example.is_partial
    _, label = read_mask_example(example, CLASSES, CLASSES[1:])
    assert label[3, 3] == 1 and label[10, 10] == EXUDATES_ONLY
    _mask_set(str(tmp_path / "all"), annotates=list(CLASSES[1:]))
    assert not load_mask_set(str(tmp_path / "all"), CLASSES)[0].is_partial
    _mask_set(str(tmp_path / "bad"), annotates=["drusen"])
    with pytest.raises(DataError, match="annotates.txt lists \\['drusen'\\]"):
        load_mask_set(str(tmp_path / "bad"), CLASSES)
    _mask_set(str(tmp_path / "contradiction"), annotates=["haemorrhage"])
    with pytest.raises(DataError, match="folders \\['exudate'\\] for classes its annotates.txt"):
        load_mask_set(str(tmp_path / "contradiction"), CLASSES)


def test_several_sets_train_together_and_decouplednet_refuses_partial_ones(tmp_path):
    from coopseg.training.train import train
    from experiments.decouplednet_stages import decoupled_experiment
    from tests.helpers import tiny_synthetic_config
    cfg = tiny_synthetic_config(str(tmp_path / "data"), str(tmp_path / "run"), steps=6,
                                eval_every=6, checkpoint_every=6)
    partial = str(tmp_path / "exudates_only")
    _mask_set(partial, annotates=["hard_exudate"], exudate=False)
    os.makedirs(os.path.join(partial, "masks", "hard_exudate"))
    full = cfg.data.masks_train
    cfg.data.masks_train = f"{full},{partial}"
    cfg.train.mode = "seg_only"
    examples = mask_examples(cfg, "train")
    assert sum(e.is_partial for e in examples) == 1 and len({e.image_id for e in examples}) == \
        len(examples)
    out = train(cfg.validate(), export=False)
    assert np.isfinite(out["metrics"]["segmentation"]["miou"])
    # A class no training image annotates could be predicted anywhere: refused.
    cfg.data.masks_train = partial
    with pytest.raises(ConfigError, match="soft_exudate, haemorrhage, microaneurysm, drusen, "
                                          "artifact: no training image annotates them"):
        mask_examples(cfg, "train")
    cfg.data.masks_train = f"{full},{partial}"
    cfg.data.masks_format = "generic,generic,idrid"
    with pytest.raises(ConfigError, match="2 mask set.* but 3 formats.*FORMAT:PATH"):
        mask_examples(cfg, "train")
    from data_pipelines.datasets import mask_sets
    assert mask_sets(f"{full},generic:{partial}", "idrid") == [(full, "idrid"),
                                                               (partial, "generic")]
    assert mask_sets(f"idrid:{full}", "generic,voc") == [(full, "idrid")]
    dn = decoupled_experiment("tiny", method="deconvnet", mode="seg_only", strong_per_class=0)
    dn.data.masks_train, dn.data.masks_val = f"{full},{partial}", ""
    dn.data.class_names = cfg.data.class_names
    from coopseg.training.decoupled_inputs import load_training_subset
    with pytest.raises(ConfigError, match="needs fully annotated masks"):
        load_training_subset(dn)
    assert experiment("tiny").data.masks_train == ""
