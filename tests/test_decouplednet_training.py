"""DecoupledNet through the shared trainer: stages, frozen classifier, restore, export, e2e."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import IGNORE_LABEL, LESION_CLASSES, ConfigError, from_dict, to_dict
from coopseg.evaluation.evaluate import evaluate_system
from coopseg.evaluation.multilabel_metrics import average_precision
from coopseg.models.decouplednet.network import foreground_segmentation_loss
from coopseg.models.decouplednet.system import (foreground_loss, multilabel_loss,
                                                restore_stage1_classifier,
                                                stage1_classifier_init_fn)
from coopseg.models.registry import build_system
from coopseg.serving.export import export_saved_model
from coopseg.training.decoupled_inputs import (build_decoupled_inputs, expand_class_pairs,
                                               with_image_labels)
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.tasks import Task, init_fn, task_for
from coopseg.training.train import train
from data_pipelines.datasets import load_masks
from data_pipelines.synthetic import ensure_dataset
from experiments.decouplednet_stages import decoupled_experiment
from experiments.runner import fingerprint
from experiments.scales import train_config
from experiments.suites import ROWS, SUITES, row_stages
from tests.helpers import logged_scalar

NUM_CLASSES = 6  # the fundus lesion classes (LESION_CLASSES[1:])


def _config(tmp_path, name: str, mode: str, method: str = "decouplednet",
            init_encoder_from: str = "", **decoupled):
    cfg = decoupled_experiment("tiny", method=method, mode=mode, strong_per_class=0)
    cfg.name = name
    cfg.run.model_dir = os.path.join(str(tmp_path), name)
    cfg.train.init_encoder_from = init_encoder_from
    for key, value in decoupled.items():
        setattr(cfg.decoupled, key, value)
    return cfg.validate()


def _trainer(cfg):
    system = build_system(cfg)
    return system, CooperativeTrainer(cfg, system)


def _stage1_batch(cfg, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, s = cfg.train.clf_agent().batch_size, cfg.model.input_size
    return (tf.constant(rng.normal(size=(n, s, s, 3)), tf.float32),
            tf.constant(rng.integers(0, 2, (n, NUM_CLASSES)), tf.int32))


def _stage2_batch(cfg):
    """Pair i = (image i, class i): a bright square where class i is, its class mask."""
    n, s = cfg.train.seg.batch_size, cfg.model.input_size
    images = np.zeros((n, s, s, 3), np.float32)
    masks = np.zeros((n, s, s), np.int32)
    for i in range(n):
        y = 4 + 12 * i
        images[i, y:y + 10, 6:16] = 3.0
        masks[i, y:y + 10, 6:16] = i + 1
    masks[0, 0, :4] = IGNORE_LABEL
    return (tf.constant(images), tf.range(n, dtype=tf.int32)), tf.constant(masks)


def _values(variables):
    return [v.numpy().copy() for v in variables]


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory):
    """A finished stage-1 run directory: config.json and a checkpoint after 2 steps."""
    cfg = _config(tmp_path_factory.mktemp("runs"), "stage1", "clf_only")
    system, trainer = _trainer(cfg)
    batch = _stage1_batch(cfg)
    for _ in range(2):
        trainer.step_fn(batch, None)
    trainer.global_step.assign(2)
    os.makedirs(cfg.run.model_dir, exist_ok=True)
    with open(os.path.join(cfg.run.model_dir, "config.json"), "w") as f:
        json.dump(to_dict(cfg), f)
    trainer.save()
    return cfg, system


def test_losses_are_the_papers_per_example_and_weight_classes():
    logits = tf.random.stateless_normal([2, 4, 4, 2], [0, 1])
    masks = np.zeros((2, 4, 4), np.int32)
    masks[0, :2] = 1                      # pair of class 0 (index 1)
    masks[1, 1:3, 1:3] = 3                # pair of class 2 (index 3)
    masks[1, 0, 0] = IGNORE_LABEL
    binary = np.where(masks == IGNORE_LABEL, IGNORE_LABEL, (masks > 0).astype(np.int32))
    # Unweighted: per pair, the model module's e_s of that pair; averaged over the pairs.
    per_pair = [float(foreground_segmentation_loss(binary[i:i + 1], logits[i:i + 1]))
                for i in range(2)]
    np.testing.assert_allclose(float(foreground_loss(masks, logits, 2)), np.mean(per_pair),
                               rtol=1e-6)
    # Weighted: class 2's foreground pixels (index 3) count 5x; nothing else changes.
    weights = tf.constant([1.0, 1.0, 1.0, 5.0, 1.0, 1.0, 1.0])
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=np.where(binary == IGNORE_LABEL, 0, binary), logits=logits).numpy()
    pixel = pixel * np.where(masks == 3, 5.0, 1.0) * (masks != IGNORE_LABEL)
    expected = np.mean(pixel.sum(axis=(1, 2)) / (masks != IGNORE_LABEL).sum(axis=(1, 2)))
    np.testing.assert_allclose(float(foreground_loss(masks, logits, 2, class_weights=weights)),
                               expected, rtol=1e-6)
    labels, scores = tf.constant([[1, 0, 1]]), tf.constant([[2.0, -1.0, 0.5]])
    expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-1.0)), np.log1p(np.exp(-0.5))])
    np.testing.assert_allclose(float(multilabel_loss(labels, scores, 1)), expected, rtol=1e-6)


def test_stage1_multilabel_loss_falls(tmp_path):
    cfg = _config(tmp_path, "stage1", "clf_only")
    system, trainer = _trainer(cfg)
    assert trainer.seg_agent is None and system.scores_grades is False
    batch = _stage1_batch(cfg)
    losses = [float(trainer.step_fn(batch, None)["clf_loss"]) for _ in range(12)]
    assert losses[-1] < 0.8 * losses[0], losses
    # Validation scores the inference-mode sigmoid of the classifier, class by class.
    names = [f"c{i}" for i in range(NUM_CLASSES)]
    metrics = evaluate_system(system, tf.data.Dataset.from_tensors(batch), None, 5,
                              ["background"] + names)
    assert "classification" not in metrics  # a multi-label classifier has no grades
    metrics = metrics["image_labels"]
    threshold = system.image_label_threshold
    scores = tf.sigmoid(system.clf_model(batch[0], training=False)).numpy()
    labels = batch[1].numpy()
    for i, name in enumerate(names):
        assert metrics["per_class_ap"][name] == average_precision(labels[:, i], scores[:, i])
    assert metrics["recall"] == pytest.approx(((scores >= threshold) & (labels == 1)).sum()
                                              / labels.sum())


def test_stage2_trains_bridge_and_deconv_only_and_its_loss_falls(tmp_path):
    cfg = _config(tmp_path, "stage2", "seg_only")
    system, trainer = _trainer(cfg)
    classifier = system.clf_model
    classifier_ids = {id(v) for v in classifier.weights}
    assert trainer.seg_agent.variables
    assert not any(id(v) in classifier_ids for v in trainer.seg_agent.variables)
    before_clf = _values(classifier.weights)  # kernels and BN moving statistics
    before_seg = _values(trainer.seg_agent.variables)
    batch = _stage2_batch(cfg)
    losses = [float(trainer.step_fn(None, batch)["seg_loss"]) for _ in range(12)]
    for old, new in zip(before_clf, _values(classifier.weights)):
        np.testing.assert_array_equal(old, new)
    after_seg = _values(trainer.seg_agent.variables)
    assert all(not np.array_equal(old, new) for old, new in zip(before_seg, after_seg))
    assert losses[-1] < 0.7 * losses[0], losses


def test_stage2_restores_the_stage1_classifier_and_checkpoints_both(tmp_path, stage1_run):
    stage1_cfg, stage1 = stage1_run
    cfg = _config(tmp_path, "stage2", "seg_only", init_encoder_from=stage1_cfg.run.model_dir)
    system, trainer = _trainer(cfg)
    assert trainer.restore_or_initialize(init_fn(cfg, system)) == 0
    for ours, theirs in zip(system.clf_model.weights, stage1.clf_model.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    trainer.step_fn(None, _stage2_batch(cfg))
    trainer.global_step.assign(1)
    trainer.save()
    # A resumed stage 2 restores both parts from its own checkpoint.
    resumed, resumed_trainer = _trainer(cfg)
    assert resumed_trainer.restore_or_initialize(init_fn(cfg, resumed)) == 1
    for part in ("classifier", "segmenter"):
        for ours, theirs in zip(resumed.parts[part].weights, system.parts[part].weights):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_stage2_refuses_a_missing_or_mismatched_classifier(tmp_path, stage1_run):
    # Both checks run before any weight is touched: no model is needed to see them fail.
    init = stage1_classifier_init_fn(_config(tmp_path, "no_stage1", "seg_only"), system=None)
    with pytest.raises(ConfigError, match="init_encoder_from"):
        init()
    wider = _config(tmp_path, "wider", "seg_only", fc_units=32,
                    init_encoder_from=stage1_run[0].run.model_dir)
    with pytest.raises(ConfigError, match="fc_units"):
        restore_stage1_classifier(None, wider)
    with pytest.raises(ConfigError, match="stages"):
        build_system(_config(tmp_path, "joint", "joint"))


def test_export_matches_in_memory_inference(tmp_path):
    cfg = _config(tmp_path, "export", "seg_only", score_threshold=0.0)
    system = build_system(cfg)
    module = system.serving_module(cfg.model.input_size)
    images = tf.random.stateless_uniform([2, 32, 32, 3], [1, 2], maxval=255.0)
    expected = module.serve(images)
    assert set(expected) == {"class_scores", "segmentation_probabilities", "class_map"}
    assert expected["segmentation_probabilities"].shape == (2, 32, 32, NUM_CLASSES + 1)
    # predict_classes (evaluation) is the same inference on standardised images.
    np.testing.assert_array_equal(
        system.predict_classes(tf.image.per_image_standardization(images)).numpy(),
        expected["class_map"].numpy())
    path = export_saved_model(system, cfg, os.path.join(str(tmp_path), "export"))
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](images=images)
    for key in ("class_scores", "segmentation_probabilities"):
        assert np.max(np.abs(served[key].numpy() - expected[key].numpy())) <= 1e-5
    np.testing.assert_array_equal(served["class_map"].numpy(), expected["class_map"].numpy())
    # The bytes signature: a lossless PNG of an S x S image with no dark border is
    # neither cropped nor resized, so it must give the float signature's outputs.
    pixels = tf.cast(tf.round(images), tf.uint8)
    from_bytes = loaded.signatures["serving_bytes"](
        image_bytes=tf.stack([tf.io.encode_png(p) for p in pixels]))
    from_floats = loaded.signatures["serving_default"](images=tf.cast(pixels, tf.float32))
    for key in from_floats:
        np.testing.assert_allclose(from_bytes[key].numpy(), from_floats[key].numpy(), atol=1e-6)


def test_deconvnet_baseline_trains_with_the_shared_loss(tmp_path):
    cfg = _config(tmp_path, "deconvnet", "seg_only", method="deconvnet")
    system, trainer = _trainer(cfg)
    assert system.clf_model is None
    # The shared per-pixel softmax: DeconvNet's task keeps the base task's losses.
    assert type(task_for(cfg)).build_losses is Task.build_losses
    logits = system.seg_model(tf.zeros([1, 32, 32, 3]))
    assert logits.shape == (1, 32, 32, NUM_CLASSES + 1)
    (images, _), masks = _stage2_batch(cfg)  # class-index masks, as DeconvNet needs
    losses = [float(trainer.step_fn(None, (images, masks))["seg_loss"]) for _ in range(10)]
    assert losses[-1] < 0.93 * losses[0], losses


def test_table1_rows_chain_their_stages():
    rows = SUITES["decouplednet_table1"].rows
    assert len(rows) == 12 and all(ROWS[r].paper.get("miou") for r in rows)
    assert {r for c in SUITES["decouplednet_table1"].claims for r in (c.a, c.b)} <= set(rows)
    full, five, str_five, str_full = (row_stages(r, "small") for r in (
        "decouplednet_full", "decouplednet_5", "decouplednet_str_5", "decouplednet_str_full"))
    # Every DecoupledNet row shares one classifier, trained on all images' labels: the
    # runner trains it once (equal fingerprints) and hands it to each segmenter.
    assert fingerprint(full[0].config) == fingerprint(five[0].config)
    assert five[0].config.decoupled.strong_per_class == 0
    assert [s.name for s in five] == ["classifier", "segmenter"]
    assert [s.config.train.mode for s in five] == ["clf_only", "seg_only"]
    assert five[1].config.decoupled.strong_per_class == 5
    # -Str trains its classifier on the strong images only; at "full" it is DecoupledNet.
    assert str_five[0].config.decoupled.strong_per_class == 5
    assert fingerprint(str_five[0].config) != fingerprint(five[0].config)
    assert ([fingerprint(s.config) for s in str_full] == [fingerprint(s.config) for s in full])
    (deconvnet,) = row_stages("decouplednet_deconvnet_10", "small")
    assert deconvnet.config.method == "deconvnet" and deconvnet.config.train.mode == "seg_only"
    assert deconvnet.config.decoupled.strong_per_class == 10
    # No run directories are wired before the runner places the stages.
    assert five[1].config.train.init_encoder_from == ""


def _random_ranking_maps(labels: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    """mAP (over classes with a positive) of ``draws`` uniformly random image rankings."""
    rng = np.random.default_rng(seed)
    aps = []
    for column in labels.T.astype(bool):
        if column.any():
            ranked = column[np.argsort(rng.random((draws, len(column))), axis=1)]
            hits = np.cumsum(ranked, axis=1)
            precision = hits / np.arange(1, len(column) + 1)
            aps.append((precision * ranked).sum(axis=1) / column.sum())
    return np.mean(aps, axis=0)


def _expected_random_ap(n: int, positives: int) -> float:
    """E[AP] of a uniformly random ranking of n items with ``positives`` positives: the
    k-th ranked positive at rank r has precision (1 + (P-1)(r-1)/(n-1)) / r on average."""
    harmonic = np.sum(1.0 / np.arange(1, n + 1))
    return (harmonic + (positives - 1) / (n - 1) * (n - harmonic)) / n


# The row's own tiny sizes (4 steps per stage) run it but cannot show learning. This is
# about the smallest budget in which both stages measurably learn on the synthetic set
# (measured at 32 px: the classifier's validation mAP is near chance after 100-200 steps,
# 0.63 after 300 and 0.71 after 400 against a chance of 0.52; the segmenter learns
# nothing in 200 steps at the tiny DecoupledNet recipe's rate 0.01, and does in 100-150
# at the CPU segmenter rate of experiments/scales.py, which the small scale uses too).
# The stage-2 loss of one batch of (image, class) pairs is noisy: at 150 steps the loss
# test passed or failed with the data order (ratio 0.48 or 0.80 for two record orders);
# at 300 it measured 0.56 against the 0.7 asked.
E2E_STEPS = {"clf_only": 400, "seg_only": 300}
E2E_MASKS_TRAIN, E2E_VAL_STAGE1, E2E_VAL_STAGE2 = 48, 64, 4


def test_two_stage_row_end_to_end_on_synthetic_fundus(tmp_path):
    root = str(tmp_path)
    cpu_seg = train_config("tiny").seg

    def use_data(c):
        stage1 = c.train.mode == "clf_only"
        # Both stages train on the same 48 images. Stage 1 validates on 64 (a tighter
        # chance level for mAP; a classifier pass is cheap), stage 2 on 4: its validation
        # runs the whole inference (the segmenter once per class and image) twice, which
        # is what the run spends most on; it is scored on stage 1's 64 below.
        data_dir = os.path.join(root, "data_stage1" if stage1 else "data_stage2")
        ensure_dataset(data_dir, num_graded_train=0, num_graded_val=0,
                       num_masks_train=E2E_MASKS_TRAIN if stage1 else 0,
                       num_masks_val=E2E_VAL_STAGE1 if stage1 else E2E_VAL_STAGE2,
                       image_size=c.data.resize_size, seed=c.data.seed, progress=False)
        c.data.masks_format = "generic"
        c.data.masks_train = os.path.join(root, "data_stage1", "lesions_train")
        c.data.masks_val = os.path.join(data_dir, "lesions_val")
        c.train.steps = E2E_STEPS[c.train.mode]
        c.run.log_every = 5
        c.run.eval_every = c.run.checkpoint_every = c.train.steps
        if not stage1:
            c.train.seg.learning_rate = cpu_seg.learning_rate
            c.train.seg.warmup_steps = cpu_seg.warmup_steps

    # The row's stages as the runner trains them: stage 2 starts from stage 1's run.
    stage1_dir, stage2_dir = os.path.join(root, "stage1"), os.path.join(root, "stage2")
    previous = ""
    for stage, run_dir in zip(row_stages("decouplednet_5", "tiny"), (stage1_dir, stage2_dir)):
        use_data(stage.config)
        stage.config.run.model_dir, stage.config.train.init_encoder_from = run_dir, previous
        tf.keras.backend.clear_session()
        out = train(stage.config.validate(), export=False)
        previous = run_dir
    assert 0.0 <= out["metrics"]["segmentation"]["miou"] <= 1.0
    for run_dir in (stage1_dir, stage2_dir):
        assert os.path.isfile(os.path.join(run_dir, "metrics.json"))
        assert tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    with open(os.path.join(stage2_dir, "config.json")) as f:
        stage2_cfg = from_dict(json.load(f))
    assert stage2_cfg.train.init_encoder_from == stage1_dir

    # Stage 1 learnt. Its loss (mean sigmoid cross-entropy per label) falls ...
    clf_losses = logged_scalar(stage1_dir, "loss/clf_loss")
    assert len(clf_losses) == E2E_STEPS["clf_only"] // 5
    fifth = len(clf_losses) // 5
    assert np.mean(clf_losses[-fifth:]) < 0.85 * np.mean(clf_losses[:5]), clf_losses
    # ... and it ranks the validation images by class better than chance. Stage 1 is
    # validated on the image-level labels of the mask validation set; chance is what a
    # random ranking of those images scores given each class's frequency there. A constant
    # score (all tied) gets AP = the class frequency, below that expectation.
    with open(os.path.join(stage1_dir, "metrics.json")) as f:
        stage1 = json.load(f)["metrics"]["image_labels"]
    val = with_image_labels(load_masks("generic", os.path.join(root, "data_stage1", "lesions_val"),
                                       LESION_CLASSES), LESION_CLASSES)
    labels = np.array([e.image_labels for e in val])
    assert stage1["num_images"] == len(labels) == E2E_VAL_STAGE1
    assert set(stage1["per_class_ap"]) == set(LESION_CLASSES[1:])
    chance = np.mean([_expected_random_ap(len(labels), p) for p in labels.sum(axis=0) if p])
    random_maps = _random_ranking_maps(labels, draws=4000)
    assert abs(random_maps.mean() - chance) < 0.01  # the closed form, checked
    print("stage-1 mAP", stage1["map"], "chance", chance, "random 99.9 %",
          np.quantile(random_maps, 0.999), "loss", clf_losses[:5], clf_losses[-fifth:])
    # Beyond what 99.9 % of random rankings reach (~0.60 here; measured 0.71). Labels
    # shifted by a few images in the stage-1 input (a real defect, tried) give 0.52.
    assert stage1["map"] > np.quantile(random_maps, 0.999), (stage1, chance)

    # Stage 2 learnt. Its loss (class-weighted fg/bg cross-entropy of (image, class)
    # pairs) falls ...
    seg_losses = logged_scalar(stage2_dir, "loss/seg_loss")
    fifth = len(seg_losses) // 5
    assert np.mean(seg_losses[-fifth:]) < 0.7 * np.mean(seg_losses[:2]), seg_losses
    # ... and for every validation image (stage 1's 64) and class it contains, the
    # segmenter's foreground probability ranks that class's pixels above the rest. Every
    # lesion IoU is still 0 at this size (32 px, 150 steps: the argmax stays background),
    # so this is the soft form: the pixel AUPR, against the AUPR of a random ranking (a
    # constant score gets the prevalence, slightly less); measured 0.03 against 0.0064.
    # Not shown at this budget: that it segments the lesion of *that* image. Training
    # each pair on another pair's mask (tried) still gives 3.6 x chance: much of what
    # 150 steps learn is where lesions can lie in these images, not which pixels they are.
    stage2_cfg.data.masks_val = os.path.join(root, "data_stage1", "lesions_val")
    system = build_system(stage2_cfg)
    status = tf.train.Checkpoint(**system.parts).restore(
        tf.train.latest_checkpoint(os.path.join(stage2_dir, "checkpoints")))
    status.assert_existing_objects_matched().expect_partial()
    scores, positives = [], []
    num_classes = len(stage2_cfg.data.class_names) - 1
    for images, masks in build_decoupled_inputs(stage2_cfg).seg_val:
        (pair_images, pair_classes), pair_masks = expand_class_pairs(images, masks, num_classes)
        fg = tf.nn.softmax(system.seg_model([pair_images, pair_classes], training=False))
        valid = pair_masks.numpy() != IGNORE_LABEL
        scores.append(fg.numpy()[..., 1][valid])
        positives.append(pair_masks.numpy()[valid] > 0)
    scores, positives = np.concatenate(scores), np.concatenate(positives)
    fg_ap = average_precision(positives, scores)
    chance = _expected_random_ap(positives.size, int(positives.sum()))
    print("stage-2 foreground AUPR", fg_ap, "chance", chance, "prevalence", positives.mean(),
          "loss", seg_losses[:2], seg_losses[-fifth:])
    assert fg_ap > 2 * chance, (fg_ap, chance)
