"""The cooperation options: their mathematics on plain tensors, then inside the real step."""
import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import ConfigError, CooperationConfig
from coopseg.models.losses import l2_penalty
from coopseg.models.registry import build_system
from coopseg.training import cooperation as co
from coopseg.training.loop import CooperativeTrainer
from experiments.scales import experiment
from tests.helpers import random_agent_batches


def _vec(*parts):
    return [tf.constant(p, tf.float32) for p in parts]


def _flat(grads):
    return np.concatenate([np.ravel(g.numpy()) for g in grads])


# ------------------------------------------------------------------------- mathematics
def test_pcgrad_removes_the_conflicting_component_from_both():
    a = _vec([1.0, 0.0], [[2.0]])
    b = _vec([-1.0, 1.0], [[0.0]])  # a·b = -1 < 0: conflict
    a2, b2 = co.pcgrad_pair(a, b)
    fa, fb, fa2, fb2 = _flat(a), _flat(b), _flat(a2), _flat(b2)
    # Each projected gradient is orthogonal to the *other's original* gradient ...
    assert abs(fa2 @ fb) < 1e-6 and abs(fb2 @ fa) < 1e-6
    # ... and equals the closed form of Yu et al.
    np.testing.assert_allclose(fa2, fa - (fa @ fb) / (fb @ fb) * fb, rtol=1e-6)
    np.testing.assert_allclose(fb2, fb - (fa @ fb) / (fa @ fa) * fa, rtol=1e-6)


def test_pcgrad_leaves_agreeing_gradients_alone():
    a, b = _vec([1.0, 2.0]), _vec([0.5, -0.1])  # a·b = 0.3 > 0
    a2, b2 = co.pcgrad_pair(a, b)
    np.testing.assert_array_equal(_flat(a2), _flat(a))
    np.testing.assert_array_equal(_flat(b2), _flat(b))


def test_normalize_sets_the_norm_ratio_and_keeps_the_direction():
    g, ref = _vec([3.0, 0.0], [[4.0]]), _vec([0.0, 1.0], [[0.0]])
    out = co.normalize_to_reference(g, ref, target=0.5)
    assert np.linalg.norm(_flat(out)) == pytest.approx(0.5 * 1.0)
    np.testing.assert_allclose(_flat(out) / np.linalg.norm(_flat(out)),
                               _flat(g) / np.linalg.norm(_flat(g)), rtol=1e-6)
    zero = co.normalize_to_reference(_vec([0.0, 0.0]), ref, target=1.0)
    assert not np.any(_flat(zero))  # nothing to rescale, and no NaN


def test_cosine():
    assert float(co.cosine(_vec([1.0, 0.0]), _vec([-2.0, 0.0]))) == pytest.approx(-1.0)
    assert float(co.cosine(_vec([1.0, 0.0]), _vec([0.0, 3.0]))) == pytest.approx(0.0)
    assert float(co.cosine(_vec([0.0, 0.0]), _vec([1.0, 0.0]))) == 0.0


def test_policy_touches_only_the_shared_variables():
    shared = tf.Variable([1.0, 1.0], name="shared")
    head = tf.Variable([1.0], name="head")
    decoder = tf.Variable([1.0], name="decoder")
    clf = [(tf.constant([1.0, 0.0]), shared), (tf.constant([5.0]), head)]
    seg = [(tf.constant([-1.0, 1.0]), shared), (tf.constant([7.0]), decoder)]
    policy = co.EncoderGradientPolicy(
        CooperationConfig(gradient_balance="pcgrad", clf_encoder_lr_scale=0.5), [shared])
    new_clf, new_seg, metrics = policy(clf, seg)
    assert float(new_clf[1][0][0]) == 5.0 and float(new_seg[1][0][0]) == 7.0  # heads untouched
    # PCGrad first, then the encoder LR scale on the classifier's part only.
    np.testing.assert_allclose(new_clf[0][0].numpy(), 0.5 * np.array([0.5, 0.5]), rtol=1e-6)
    np.testing.assert_allclose(new_seg[0][0].numpy(), [0.0, 1.0], atol=1e-6)
    assert float(metrics["encoder_grad_cosine"]) == pytest.approx(-1 / np.sqrt(2), rel=1e-5)


def test_the_papers_policy_passes_gradients_through():
    shared = tf.Variable([1.0, 1.0])
    clf = [(tf.constant([1.0, 0.0]), shared)]
    seg = [(tf.constant([-1.0, 1.0]), shared)]
    new_clf, new_seg, metrics = co.EncoderGradientPolicy(CooperationConfig(), [shared])(clf, seg)
    assert new_clf[0][0] is clf[0][0] and new_seg[0][0] is seg[0][0]
    assert "encoder_grad_cosine" in metrics


# ------------------------------------------------------------------------- in the step
# Two levels at 32 px: the step's mathematics do not depend on size, tracing time does.
SMALLEST = dict(input_size=32, encoder_filters=(8, 16), encoder_blocks=(1, 1),
                classifier_filters=8)


def _trainer(tmp_path, mode="joint", **cooperation):
    cfg = experiment("tiny", model=SMALLEST, train=dict(mode=mode),
                     run=dict(model_dir=str(tmp_path)))
    cfg.train.seg.warmup_steps = cfg.train.clf.warmup_steps = 0
    for key, value in cooperation.items():
        setattr(cfg.train.cooperation, key, value)
    cfg.validate()
    tf.keras.utils.set_random_seed(0)
    system = build_system(cfg)
    return cfg, system, CooperativeTrainer(cfg, system)


def test_zero_classifier_encoder_rate_moves_the_encoder_as_the_segmenter_alone(tmp_path):
    """clf_encoder_lr_scale=0 through the real trainer: the joint step's encoder update
    is exactly the seg_only step's (same weights, same batch); the classifier head still
    learns. The control with the paper's policy is the next test."""
    cfg, system, joint = _trainer(tmp_path / "j", clf_encoder_lr_scale=0.0)
    _, seg_system, alone = _trainer(tmp_path / "s", mode="seg_only")
    clf, seg = random_agent_batches(cfg)
    pairs = list(zip(system.parts["encoder"].trainable_variables,
                     seg_system.parts["encoder"].trainable_variables))
    for a, b in pairs:
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # same initial weights
    head = [v.numpy().copy() for v in system.parts["classifier"].trainable_variables]
    out = joint.step_fn(clf, seg)
    alone.step_fn(None, seg)
    for a, b in pairs:
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(h, v.numpy())
               for h, v in zip(head, system.parts["classifier"].trainable_variables))
    assert -1.0 <= float(out["encoder_grad_cosine"]) <= 1.0


def _toy_step(cooperation: CooperationConfig, seed: int = 0):
    """The real CooperativeStep over a toy system (shared Dense, two heads), cheap to trace."""
    from coopseg.config import AgentConfig
    from coopseg.training.agents import make_agent
    from coopseg.training.cooperative import CooperativeStep

    tf.keras.utils.set_random_seed(seed)
    x = tf.keras.Input((4,))
    shared = tf.keras.layers.Dense(6, activation="tanh", name="shared")
    clf_model = tf.keras.Model(x, tf.keras.layers.Dense(3, name="clf_head")(shared(x)))
    seg_model = tf.keras.Model(x, tf.keras.layers.Dense(2, name="seg_head")(shared(x)))

    def loss(labels, logits, batch):
        return tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(
            labels, logits, from_logits=True)) / batch

    agents = [make_agent(name, m, m.trainable_variables,
                         AgentConfig(learning_rate=0.5, batch_size=8, decay_power=1.0), 10, loss)
              for name, m in (("clf", clf_model), ("seg", seg_model))]
    step = CooperativeStep(*agents, encoder_policy=co.EncoderGradientPolicy(
        cooperation, shared.trainable_variables))
    rng = np.random.default_rng(1)
    batch = lambda k: (tf.constant(rng.normal(size=(8, 4)), tf.float32),  # noqa: E731
                       tf.constant(rng.integers(0, k, 8), tf.int32))
    return step, shared, batch(3), batch(2)


@pytest.mark.parametrize("cooperation", [
    CooperationConfig(), CooperationConfig(clf_encoder_lr_scale=0.0),
    CooperationConfig(gradient_balance="normalize", balance_target=0.25),
    CooperationConfig(gradient_balance="pcgrad")], ids=["paper", "zero", "normalize", "pcgrad"])
def test_each_option_changes_the_shared_update_as_its_maths_says(cooperation):
    """One step of the real step function equals one step computed by hand from the two
    agents' raw gradients and the option's formula (first Nesterov step: Δ = -lr(1+m)g)."""
    step, shared, clf, seg = _toy_step(cooperation)
    with tf.GradientTape(persistent=True) as tape:
        lc, ls = [a.loss_fn(y, a.model(x), 8) + l2_penalty(a.variables, a.weight_decay)
                  for a, (x, y) in ((step.clf_agent, clf), (step.seg_agent, seg))]
    g_clf = tape.gradient(lc, shared.trainable_variables)
    g_seg = tape.gradient(ls, shared.trainable_variables)
    expected_clf, expected_seg = g_clf, g_seg
    if cooperation.gradient_balance == "normalize":
        expected_clf = co.normalize_to_reference(g_clf, g_seg, cooperation.balance_target)
    elif cooperation.gradient_balance == "pcgrad":
        expected_clf, expected_seg = co.pcgrad_pair(g_clf, g_seg)
    expected_clf = co.scale_gradients(expected_clf, cooperation.clf_encoder_lr_scale)
    before = [v.numpy().copy() for v in shared.trainable_variables]
    out = step(clf, seg)
    lr, m = 0.5, 0.9
    for v, b, gc, gs in zip(shared.trainable_variables, before, expected_clf, expected_seg):
        np.testing.assert_allclose(v.numpy() - b, -lr * (1 + m) * (gc.numpy() + gs.numpy()),
                                   rtol=2e-4, atol=1e-6)
    assert float(out["encoder_grad_cosine"]) == pytest.approx(
        float(co.cosine(g_clf, g_seg)), abs=1e-5)


# -------------------------------------------------------------------------- validation
@pytest.mark.parametrize("change,message", [
    (lambda c: setattr(c.train.cooperation, "gradient_balance", "gradnorm"), "gradient_balance"),
    (lambda c: setattr(c.train.cooperation, "clf_encoder_lr_scale", -1.0), "clf_encoder_lr_scale"),
    (lambda c: setattr(c.train.cooperation, "balance_target", 0.0), "balance_target"),
    (lambda c: (setattr(c.train.cooperation, "gradient_balance", "pcgrad"),
                setattr(c.train, "mode", "seg_only")), "train.mode"),
    (lambda c: (setattr(c.train.cooperation, "gradient_balance", "pcgrad"),
                setattr(c, "method", "fcn8s")), "shared encoder"),
    (lambda c: setattr(c.model, "per_agent_batch_norm", True) or setattr(c, "method",
                                                                          "inception_unet"),
     "per_agent_batch_norm"),
])
def test_invalid_cooperation_settings_are_refused(change, message):
    cfg = experiment("tiny")
    change(cfg)
    with pytest.raises(ConfigError, match=message):
        cfg.validate()
