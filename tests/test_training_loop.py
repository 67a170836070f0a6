"""The loop around the step: learning on synthetic fundus data, resume, divergence."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coopseg.metrics_report import average_precision
from coopseg.models.registry import build_system
from coopseg.training.inputs import build_inputs
from coopseg.training.losses import segmentation_loss
from coopseg.training.loop import CooperativeTrainer
from tests.helpers import tiny_synthetic_config


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("synthetic"))


def _lesion_aupr(system, dataset):
    scores, labels = [], []
    for images, masks in dataset:
        probs = tf.nn.softmax(system.seg_model(images, training=False))
        scores.append(1.0 - probs[..., 0].numpy().ravel())
        m = masks.numpy().ravel()
        labels.append((m > 0) & (m != 255))
    labels = np.concatenate(labels)
    return average_precision(labels, np.concatenate(scores)), labels.mean()


def _optimizer_state(trainer):
    return {f"{a.name}/{v.name}": v.numpy().copy() for a in trainer.agents
            for v in a.optimizer.variables}


def test_tiny_joint_run_learns_and_resumes(synthetic_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    cfg = tiny_synthetic_config(synthetic_dir, model_dir, steps=90, eval_every=80,
                                checkpoint_every=40, log_every=10)
    system = build_system(cfg)
    trainer = CooperativeTrainer(cfg, system)
    assert trainer.restore_or_initialize() == 0
    inputs = build_inputs(cfg)
    seg_batch = next(iter(inputs.seg_val))
    aupr_before, prevalence = _lesion_aupr(system, inputs.seg_val)
    # Unweighted cross-entropy on a fixed validation batch, eval-mode BN.
    before = float(segmentation_loss(seg_batch[1], system.seg_model(seg_batch[0]), None))
    metrics = trainer.fit(inputs, until_step=80)  # "interrupted" at 80 of 90
    after = float(segmentation_loss(seg_batch[1], system.seg_model(seg_batch[0]), None))
    print("seg loss before/after", before, after, "metrics", metrics)
    assert after < 0.5 * before, (before, after)
    # Beats a trivial predictor: ranking pixels by p(lesion) = 1 - p(background), the
    # AUPR of "any lesion" rises well above the lesion prevalence (what any constant
    # score achieves) and above the untrained model's. Hard-argmax IoU needs longer
    # runs than a unit test: see test_small_demo_learns_both_tasks (slow).
    aupr, _ = _lesion_aupr(system, inputs.seg_val)
    print("lesion AUPR before/after", aupr_before, aupr, "prevalence", prevalence)
    assert aupr > 1.5 * prevalence and aupr > 1.3 * aupr_before, (aupr_before, aupr, prevalence)
    assert metrics["segmentation"]["pixel_accuracy"] > 0.9
    assert metrics["classification"]["count"] == 16
    # TensorBoard logs, checkpoints at 30 and 60, config written.
    assert os.listdir(os.path.join(model_dir, "logs", "train"))
    assert sorted(os.path.basename(p) for p in trainer.manager.checkpoints)[-1] == "ckpt-80"
    assert json.load(open(os.path.join(model_dir, "config.json")))["train"]["steps"] == 90

    # Resume: a new process-equivalent (fresh models) restores step, weights, both
    # optimizers (slots + iteration counters), hence the same learning rates.
    saved_state = _optimizer_state(trainer)
    saved_lrs = [a.learning_rate() for a in trainer.agents]
    saved_weights = [v.numpy().copy() for v in system.seg_model.variables]
    tf.keras.backend.clear_session()
    system2 = build_system(cfg)
    trainer2 = CooperativeTrainer(cfg, system2)
    assert trainer2.restore_or_initialize() == 80
    state2 = _optimizer_state(trainer2)
    assert state2.keys() == saved_state.keys()
    for key, value in saved_state.items():
        np.testing.assert_array_equal(state2[key], value, err_msg=key)
    assert [a.learning_rate() for a in trainer2.agents] == pytest.approx(saved_lrs, rel=1e-7)
    for a, b in zip(saved_weights, system2.seg_model.variables):
        np.testing.assert_array_equal(a, b.numpy())
    trainer2.fit(build_inputs(cfg, start_step=80))
    assert int(trainer2.global_step.numpy()) == 90
    assert int(trainer2.clf_agent.optimizer.iterations.numpy()) == 90


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(synthetic_dir, tmp_path):
    from coopseg.training.loop import TrainingDiverged
    cfg = tiny_synthetic_config(synthetic_dir, str(tmp_path / "run"), mode="seg_only", steps=20,
                                checkpoint_every=5, log_every=5, eval_every=100)
    cfg.train.seg.learning_rate = 1e6  # diverges within a few steps
    cfg.train.seg.end_learning_rate = 1e6
    trainer = CooperativeTrainer(cfg, build_system(cfg))
    trainer.restore_or_initialize()
    trainer.save()  # a known-good checkpoint at step 0
    with pytest.raises(TrainingDiverged, match=r"NaN/Inf.*Last good checkpoint: .*ckpt-\d+"):
        trainer.fit(build_inputs(cfg))
    latest = trainer.manager.latest_checkpoint
    reader = tf.train.load_checkpoint(latest)
    for name in reader.get_variable_to_shape_map():
        if name.endswith("VARIABLE_VALUE") and reader.get_variable_to_dtype_map()[name].is_floating:
            assert np.all(np.isfinite(reader.get_tensor(name))), (latest, name)


@pytest.mark.slow
def test_small_demo_learns_both_tasks(tmp_path):
    """The demo's claim (README): lesion IoU well above zero and grading above chance."""
    from coopseg.cli.train import train, use_synthetic_data
    from experiments.registry import get_experiment
    cfg = get_experiment("demo", "small")
    cfg.train.model_dir = str(tmp_path / "run")
    use_synthetic_data(cfg, str(tmp_path / "data"), "small")
    out = train(cfg.validate(), export=False)
    seg, clf = out["metrics"]["segmentation"], out["metrics"]["classification"]
    assert seg["miou_no_background"] > 0.08, seg["iou"]
    assert max(v for k, v in seg["iou"].items() if k != "background" and v) > 0.2
    assert clf["quadratic_kappa"] > 0.15, clf
