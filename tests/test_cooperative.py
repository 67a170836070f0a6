"""The two-agent step: each agent changes only its own parameters, at its own rate."""
import numpy as np
import pytest
import tensorflow as tf

from coopseg.models.losses import segmentation_loss
from coopseg.models.registry import build_system
from coopseg.training.loop import CooperativeTrainer
from experiments.scales import experiment
from tests.helpers import random_agent_batches


def _setup(tmp_path, mode, **train):
    cfg = experiment("tiny", train=dict(mode=mode, **train), run=dict(model_dir=str(tmp_path)))
    cfg.validate()
    system = build_system(cfg)
    return cfg, system, CooperativeTrainer(cfg, system)


def _snapshot(model):
    return {v.name: v.numpy().copy() for v in model.variables}


def _changed(before, model):
    return {v.name for v in model.variables if not np.array_equal(before[v.name], v.numpy())}


@pytest.mark.parametrize("mode,clf_changes,dec_changes", [
    ("clf_only", True, False), ("seg_only", False, True), ("joint", True, True)])
def test_each_agent_updates_only_its_parameters(tmp_path, mode, clf_changes, dec_changes):
    cfg, system, trainer = _setup(tmp_path, mode)
    parts = system.parts
    before = {k: _snapshot(m) for k, m in parts.items()}
    clf, seg = random_agent_batches(cfg)
    trainer.step_fn(clf if trainer.clf_agent else None, seg if trainer.seg_agent else None)
    changed = {k: _changed(before[k], m) for k, m in parts.items()}
    # θ1 is shared: every agent moves the encoder's trainable weights
    enc_trainable = {v.name for v in parts["encoder"].trainable_variables}
    assert enc_trainable <= changed["encoder"]
    assert bool(changed["classifier"]) is clf_changes
    assert bool(changed["decoder"]) is dec_changes
    if clf_changes:
        assert {v.name for v in parts["classifier"].trainable_variables} <= changed["classifier"]
    if dec_changes:
        assert {v.name for v in parts["decoder"].trainable_variables} <= changed["decoder"]


def test_lr_ratio_is_applied_to_the_updates(tmp_path):
    cfg, system, trainer = _setup(tmp_path, "joint", lr_ratio=30.0)
    # Without warm-up the first update uses the base rates, so Δ can be checked in closed form.
    cfg.train.seg.warmup_steps = cfg.train.clf.warmup_steps = 0
    trainer = CooperativeTrainer(cfg, system)
    seg_lr = cfg.train.seg.learning_rate
    assert trainer.clf_agent.learning_rate() == pytest.approx(30 * seg_lr, rel=1e-6)
    assert trainer.seg_agent.learning_rate() == pytest.approx(seg_lr, rel=1e-6)
    clf, seg = random_agent_batches(cfg)
    clf_bias = next(v for v in system.clf_model.trainable_variables if "classifier_logits/bias" in v.name)
    seg_bias = next(v for v in system.seg_model.trainable_variables if "decoder_logits/bias" in v.name)
    with tf.GradientTape(persistent=True) as tape:
        lc = trainer.clf_agent.loss_fn(clf[1], system.clf_model(clf[0], training=True),
                                       trainer.clf_agent.batch_size)
        ls = trainer.seg_agent.loss_fn(seg[1], system.seg_model(seg[0], training=True),
                                       trainer.seg_agent.batch_size)
    g_clf, g_seg = tape.gradient(lc, clf_bias).numpy(), tape.gradient(ls, seg_bias).numpy()
    b_clf, b_seg = clf_bias.numpy().copy(), seg_bias.numpy().copy()
    trainer.step_fn(clf, seg)
    momentum = cfg.train.seg.momentum
    # First Nesterov step of Keras SGD: Δ = -lr * (1 + momentum) * g (biases have no L2).
    np.testing.assert_allclose(clf_bias.numpy() - b_clf, -30 * seg_lr * (1 + momentum) * g_clf,
                               rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(seg_bias.numpy() - b_seg, -seg_lr * (1 + momentum) * g_seg,
                               rtol=1e-3, atol=1e-7)


def test_batch_ratio_derives_the_classifier_batch():
    cfg = experiment("tiny", train=dict(batch_ratio=32, lr_ratio=30.0))
    assert cfg.train.clf_agent().batch_size == 32 * cfg.train.seg.batch_size
    assert cfg.train.clf_agent().learning_rate == pytest.approx(30 * cfg.train.seg.learning_rate)


def test_segmentation_loss_ignores_255():
    logits = tf.constant(np.random.default_rng(1).normal(size=(1, 2, 2, 3)), tf.float32)
    masks = tf.constant([[[0, 1], [255, 255]]])
    want = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=[0, 1], logits=tf.reshape(logits, (4, 3))[:2]))
    assert float(segmentation_loss(masks, logits, 1)) == pytest.approx(float(want), rel=1e-6)


def test_nan_loss_latches_and_blocks_checkpoint(tmp_path):
    from coopseg.training.loop import TrainingDiverged
    cfg, system, trainer = _setup(tmp_path, "seg_only")
    trainer.save()
    clf, seg = random_agent_batches(cfg)
    bad = (tf.fill(tf.shape(seg[0]), np.nan), seg[1])
    trainer.step_fn(None, bad)
    assert not bool(trainer.step_fn.all_finite.numpy())
    with pytest.raises(TrainingDiverged, match="Last good checkpoint: .*ckpt-0"):
        trainer.save()
