"""model.per_agent_batch_norm: the classifier agent's own BN statistics in the shared encoder."""

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError
from coopseg.models.jointseg.agent_batch_norm import AgentBatchNormalization
from coopseg.models.registry import build_system
from coopseg.models.transfer import transfer_encoder_weights
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.strategy import make_strategy
from experiments.scales import experiment
from tests.helpers import built_system_with_bn_statistics, logged_scalar

BN = tf.keras.layers.BatchNormalization


@pytest.fixture(scope="module")
def built():
    """``(cfg, system, images)``: one tiny per-agent system (through the registry, as
    training builds it) after a joint training-mode pass (the export tests' helper),
    shared by the tests below. Each test asserts changes relative to the state it
    finds, so the order they run in does not matter."""
    cfg = experiment("tiny", model={"per_agent_batch_norm": True}).validate()
    system, images = built_system_with_bn_statistics(cfg)
    return cfg, system, images


def _images(cfg, seed: int, scale: float = 1.0, shift: float = 0.0, batch: int = 4):
    """Standardised-looking images; ``scale``/``shift`` make a second distribution."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, cfg.model.input_size, cfg.model.input_size, 3))
    return tf.constant(x.astype("float32") * scale + shift)


def _bn_pairs(system):
    """(shared encoder BN layer, the classifier view's layer for it), in layer order."""
    encoder, view = system.parts["encoder"], system.parts["clf_encoder_statistics"]
    pairs = [(layer, view.get_layer(layer.name + "_clf_stats"))
             for layer in encoder.layers if isinstance(layer, BN)]
    assert pairs
    return pairs


def _statistics(layers):
    return [np.concatenate([layer.moving_mean.numpy(), layer.moving_variance.numpy()])
            for layer in layers]


def _shared_path(system, x):
    """Grade logits of the classifier on the encoder itself (the segmenter's statistics)."""
    feats = system.parts["encoder"](x, training=False)
    return system.parts["classifier"](feats[0], training=False).numpy()


def test_view_shares_every_trainable_variable_and_adds_only_statistics(built):
    _, system, _ = built
    enc, view = system.parts["encoder"], system.parts["clf_encoder_statistics"]
    classifier, decoder = system.parts["classifier"], system.parts["decoder"]
    # The same variable objects, in the same order (the optimizers' slots line up).
    assert [id(v) for v in view.trainable_variables] == [id(v) for v in enc.trainable_variables]
    assert [id(v) for v in system.clf_model.trainable_variables] == [
        id(v) for v in enc.trainable_variables + classifier.trainable_variables]
    assert [id(v) for v in system.seg_model.trainable_variables] == [
        id(v) for v in enc.trainable_variables + decoder.trainable_variables]
    assert [id(v) for v in system.shared_variables] == [id(v) for v in enc.trainable_variables]
    convs = [layer for layer in enc.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert convs and all(view.get_layer(c.name) is c for c in convs)  # layers, not copies
    assert [layer.name for layer in system.clf_model.layers] == [
        "image", "encoder_clf_stats", "classifier"]
    pairs = _bn_pairs(system)
    for bn, own in pairs:
        assert isinstance(own, AgentBatchNormalization)
        assert own.gamma is bn.gamma and own.beta is bn.beta
        assert own.moving_mean is not bn.moving_mean
        assert own.moving_variance is not bn.moving_variance
        assert (own.momentum, own.epsilon) == (bn.momentum, bn.epsilon)
    # Exactly one new (moving mean, moving variance) pair per BN layer, nothing else.
    enc_ids = {id(v) for v in enc.weights}
    extra = [v for v in view.weights if id(v) not in enc_ids]
    assert len(extra) == 2 * len(pairs) and not any(v.trainable for v in extra)
    assert {id(v) for v in extra} == {id(v) for _, own in pairs
                                      for v in (own.moving_mean, own.moving_variance)}
    # ... and the view does not hold the encoder's statistics.
    assert not {id(bn.moving_mean) for bn, _ in pairs} & {id(v) for v in view.weights}


def test_each_agent_training_pass_moves_only_its_own_statistics(built):
    cfg, system, _ = built
    pairs = _bn_pairs(system)
    shared0, own0 = _statistics(b for b, _ in pairs), _statistics(o for _, o in pairs)
    stem_bn, stem_own = pairs[0]
    stem_mean0, stem_var0 = stem_own.moving_mean.numpy(), stem_own.moving_variance.numpy()
    x_clf = _images(cfg, 1, scale=3.0, shift=1.0)
    system.clf_model(x_clf, training=True)
    shared1, own1 = _statistics(b for b, _ in pairs), _statistics(o for _, o in pairs)
    for a, b in zip(shared0, shared1):
        np.testing.assert_array_equal(a, b)  # the segmenter's statistics did not move
    assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(own0, own1))  # every own one did
    # By hand for the first layer: Keras BN's update (momentum 0.9) with the moments of
    # the stem conv output; the variance Bessel-corrected, as Keras' fused BN does.
    conv = system.parts["encoder"].get_layer("encoder_stem_conv")(x_clf).numpy()
    conv = conv.astype(np.float64)
    mean, var = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2), ddof=1)
    decay = 1.0 - stem_bn.momentum
    np.testing.assert_allclose(stem_own.moving_mean.numpy(),
                               stem_mean0 + decay * (mean - stem_mean0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stem_own.moving_variance.numpy(),
                               stem_var0 + decay * (var - stem_var0), rtol=1e-4, atol=1e-5)

    system.seg_model(_images(cfg, 2), training=True)
    shared2, own2 = _statistics(b for b, _ in pairs), _statistics(o for _, o in pairs)
    for a, b in zip(own1, own2):
        np.testing.assert_array_equal(a, b)  # the classifier's statistics did not move
    assert all(np.abs(a - b).max() > 1e-4 for a, b in zip(shared1, shared2))

    # From equal statistics, the same images through both paths: the view computes
    # what the encoder's Keras BN layers compute, outputs and updates.
    for bn, own in pairs:
        own.moving_mean.assign(bn.moving_mean)
        own.moving_variance.assign(bn.moving_variance)
    x = _images(cfg, 3)
    view_out = system.parts["clf_encoder_statistics"](x, training=True)
    enc_out = system.parts["encoder"](x, training=True)
    for a, b in zip(view_out, enc_out):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    for a, b in zip(_statistics(b for b, _ in pairs), _statistics(o for _, o in pairs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_inference_normalises_with_the_classifier_statistics(built):
    cfg, system, _ = built
    for seed in range(2):  # two differently distributed input streams
        system.clf_model(_images(cfg, 10 + seed, scale=3.0, shift=1.0), training=True)
        system.seg_model(_images(cfg, 20 + seed), training=True)
    x = _images(cfg, 30, scale=3.0, shift=1.0)
    # One layer by hand: the view's stem BN output uses its own statistics and shared γ/β.
    stem_bn, stem_own = _bn_pairs(system)[0]
    view = system.parts["clf_encoder_statistics"]
    tap = tf.keras.Model(view.input, stem_own.output)
    conv = system.parts["encoder"].get_layer("encoder_stem_conv")(x).numpy()
    gamma, beta = stem_bn.gamma.numpy(), stem_bn.beta.numpy()

    def normalised(layer):
        std = np.sqrt(layer.moving_variance.numpy() + stem_bn.epsilon)
        return (conv - layer.moving_mean.numpy()) / std * gamma + beta

    got = tap(x, training=False).numpy()
    np.testing.assert_allclose(got, normalised(stem_own), rtol=1e-4, atol=1e-4)
    assert np.abs(got - normalised(stem_bn)).max() > 0.1  # the segmenter's would differ
    # The whole model: clf_model is the classifier on the encoder only once the
    # encoder's BN layers hold the classifier's statistics.
    clf = system.clf_model(x, training=False).numpy()
    assert np.abs(clf - _shared_path(system, x)).max() > 1e-3
    joint = system.joint_model(x, training=False)
    np.testing.assert_allclose(joint["grade_logits"].numpy(), clf, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(joint["seg_logits"].numpy(),
                               system.seg_model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    for bn, own in _bn_pairs(system):
        bn.moving_mean.assign(own.moving_mean)
        bn.moving_variance.assign(own.moving_variance)
    np.testing.assert_allclose(_shared_path(system, x), clf, rtol=1e-4, atol=1e-4)


def test_classifier_loss_reaches_the_shared_gamma_beta_and_kernels(built):
    cfg, system, _ = built
    x = _images(cfg, 4, scale=3.0, shift=1.0)
    labels = tf.constant([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        logits = system.clf_model(x, training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True))
    pairs = _bn_pairs(system)
    shared = [bn.gamma for bn, _ in pairs] + [bn.beta for bn, _ in pairs] + [
        layer.kernel for layer in system.parts["encoder"].layers
        if isinstance(layer, tf.keras.layers.Conv2D)]
    grads = tape.gradient(loss, shared)
    missing = [v.name for v, g in zip(shared, grads)
               if g is None or not float(tf.reduce_max(tf.abs(g))) > 0]
    assert not missing


def test_checkpoint_of_the_parts_restores_the_classifier_statistics(built, tmp_path):
    cfg, system, _ = built
    system.clf_model(_images(cfg, 5, scale=3.0, shift=1.0), training=True)
    system.seg_model(_images(cfg, 6), training=True)
    saved = {name: [v.numpy() for v in part.weights] for name, part in system.parts.items()}
    path = tf.train.Checkpoint(**system.parts).save(str(tmp_path / "ckpt"))
    # The classifier's statistics are saved under their part (the shared variables once,
    # under whichever path reaches them first).
    own_keys = [k for k, _ in tf.train.list_variables(path)
                if k.startswith("clf_encoder_statistics/") and "moving_mean" in k]
    assert len(own_keys) == len(_bn_pairs(system))

    restored = build_system(cfg)
    view = restored.parts["clf_encoder_statistics"]
    assert any(not np.array_equal(a.numpy(), b)
               for a, b in zip(view.weights, saved["clf_encoder_statistics"]))
    tf.train.Checkpoint(**restored.parts).restore(path).assert_consumed()
    for name, values in saved.items():
        for a, b in zip(restored.parts[name].weights, values):
            np.testing.assert_array_equal(a.numpy(), b, err_msg=f"{name}/{a.name}")
    x = _images(cfg, 7)
    np.testing.assert_array_equal(restored.clf_model(x, training=False).numpy(),
                                  system.clf_model(x, training=False).numpy())


def test_export_serves_the_classifier_statistics(built, tmp_path):
    from coopseg.serving.export import export_saved_model

    cfg, system, images = built
    x = tf.image.per_image_standardization(images)
    # A differently distributed classifier stream, so the two sets of statistics differ.
    system.clf_model(x * 3.0 + 1.0, training=True)
    path = export_saved_model(system, cfg, str(tmp_path / "export"))
    got = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(images))
    want = tf.nn.softmax(system.clf_model(x, training=False)).numpy()
    np.testing.assert_allclose(got["grade_probabilities"].numpy(), want, atol=1e-5)
    np.testing.assert_allclose(got["segmentation_probabilities"].numpy(),
                               tf.nn.softmax(system.seg_model(x, training=False)).numpy(),
                               atol=1e-5)
    # What the encoder's (segmenter's) statistics would have served instead.
    assert np.abs(tf.nn.softmax(_shared_path(system, x)).numpy() - want).max() > 1e-3


@pytest.mark.slow  # ~40 s; the mechanics are covered by the fast tests above
def test_tiny_joint_run_with_per_agent_statistics(tmp_path):
    from coopseg.training.train import train
    from tests.helpers import tiny_synthetic_config

    run_dir = str(tmp_path / "run")
    # Op determinism: the loss curve (and so the margins below) is the same every run.
    cfg = tiny_synthetic_config(str(tmp_path / "data"), run_dir, steps=30, log_every=1,
                                eval_every=30, checkpoint_every=30, deterministic=True)
    cfg.model.per_agent_batch_norm = True
    out = train(cfg.validate(), export=False)
    assert out["metrics"]["classification"]["count"] == 16
    assert "segmentation" in out["metrics"]
    clf, seg = logged_scalar(run_dir, "loss/clf_loss"), logged_scalar(run_dir, "loss/seg_loss")
    assert len(clf) == len(seg) == 30 and np.all(np.isfinite(clf + seg))
    # Single-batch losses are noisy: compare the means of the first and last ten steps.
    # Measured: segmentation 1.72 -> 1.25, classification 1.43 -> 1.37 (30 tiny steps
    # teach the classifier little beyond the grade prior, about the same without this
    # option), so the falling objectives asserted are the segmenter's and the sum.
    first, last = np.mean(seg[:10]), np.mean(seg[-10:])
    assert last < 0.8 * first, seg
    assert np.mean(clf[-10:]) + last < 0.9 * (np.mean(clf[:10]) + first), (clf, seg)
    # The run's checkpoint holds the classifier's statistics, and they are not the encoder's.
    from coopseg.runs.run_dir import load_trained_system
    restored = load_trained_system(run_dir)
    view = restored.parts["clf_encoder_statistics"]
    own = view.get_layer("encoder_stem_bn_clf_stats").moving_mean.numpy()
    shared = restored.parts["encoder"].get_layer("encoder_stem_bn").moving_mean.numpy()
    assert np.any(own) and np.abs(own - shared).max() > 1e-3


def test_two_step_from_a_per_agent_classifier_takes_its_statistics(built):
    """A segmenter without per-agent BN, initialised from a per-agent classifier (the
    two-step transfer), gets the classifier's statistics in its encoder's BN layers."""
    cfg, source, _ = built
    target = build_system(experiment("tiny", train={"mode": "seg_only"}).validate())
    copied = transfer_encoder_weights(source.clf_model, target.seg_model, "encoder_")
    assert copied > 0
    for shared, clf_stats in _bn_pairs(source):
        got = target.parts["encoder"].get_layer(shared.name)
        np.testing.assert_array_equal(got.moving_mean.numpy(), clf_stats.moving_mean.numpy())
        np.testing.assert_array_equal(got.moving_variance.numpy(),
                                      clf_stats.moving_variance.numpy())
        np.testing.assert_array_equal(got.gamma.numpy(), shared.gamma.numpy())
    # The classifier's statistics differ from the segmenter path's: it is not a no-op.
    assert any(not np.array_equal(a, b) for a, b in
               zip(_statistics(p[0] for p in _bn_pairs(source)),
                   _statistics(p[1] for p in _bn_pairs(source))))


@pytest.mark.parametrize("saved_with, resumed_with, message", [
    (False, True, "missing: clf_encoder_statistics"),
    (True, False, "not in this model: clf_encoder_statistics"),
])
def test_resuming_with_the_other_setting_is_a_clear_error(tmp_path, saved_with, resumed_with,
                                                          message):
    """Switching per-agent statistics on (or off) between runs of one model_dir would
    restore the checkpoint partially and silently; it is refused, naming the part."""
    def trainer(per_agent: bool) -> CooperativeTrainer:
        cfg = experiment("tiny", model={"per_agent_batch_norm": per_agent},
                         run={"model_dir": str(tmp_path)}).validate()
        return CooperativeTrainer(cfg, build_system(cfg), make_strategy("default"))

    first = trainer(saved_with)
    first.save()
    first.close()
    with pytest.raises(ConfigError, match=message):
        trainer(resumed_with).restore_or_initialize()
    assert trainer(saved_with).restore_or_initialize() == 0  # the same setting resumes
