"""Mixed precision end to end: half-precision convs, float32 logits, loss scaling on both
agents, a float32 SavedModel, and the global policy restored afterwards."""
import numpy as np
import pytest
import tensorflow as tf

from coopseg.models.registry import build_system
from coopseg.serving.export import export_saved_model
from coopseg.training.agents import Agent
from coopseg.training.cooperative import _agent_update
from coopseg.training.loop import CooperativeTrainer
from coopseg.models.losses import l2_penalty
from coopseg.training.precision import use_precision
from experiments.scales import experiment

LSO = tf.keras.mixed_precision.LossScaleOptimizer


def _config(policy, model=None, model_dir: str = "runs/default", **train):
    return experiment("tiny", model=model, train=dict(mixed_precision=policy, **train),
                      run=dict(model_dir=model_dir)).validate()


# One encoder level at 32 px: float16 kernels are slow on a CPU, and the step's size is
# irrelevant to what is tested.
SMALL = {"input_size": 32, "encoder_filters": (8,), "encoder_blocks": (1,)}


def _policy() -> str:
    return tf.keras.mixed_precision.global_policy().name


@pytest.fixture(autouse=True)
def _float32_after():
    yield
    # A failing test must not leave half precision behind for the rest of the suite.
    tf.keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy,half", [("mixed_float16", "float16"),
                                         ("mixed_bfloat16", "bfloat16")])
def test_convs_compute_in_half_precision_and_logits_are_float32(policy, half):
    cfg = _config(policy)
    with use_precision(cfg):
        assert _policy() == policy
        system = build_system(cfg)
    assert _policy() == "float32"
    convs = [layer for part in system.parts.values() for layer in part.layers
             if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Conv2DTranspose))]
    half_convs = [c for c in convs if c.compute_dtype == half]
    # Only the final 1x1 logits conv computes in float32.
    assert [c.name for c in convs if c not in half_convs] == ["decoder_logits"]
    assert len(half_convs) >= 0.9 * len(convs)
    assert all(v.dtype == tf.float32 for v in system.joint_model.weights)
    s = cfg.model.input_size
    out = system.joint_model(tf.zeros([1, s, s, 3]), training=False)
    assert out["grade_logits"].dtype == tf.float32 and out["seg_logits"].dtype == tf.float32
    # A model built after the block is float32 again.
    assert build_system(_config("")).parts["encoder"].layers[1].compute_dtype == "float32"


def _batches(cfg, seed=0):
    rng = np.random.default_rng(seed)
    s = cfg.model.input_size
    nc, ns = cfg.train.clf_agent().batch_size, cfg.train.seg.batch_size
    clf = (tf.constant(rng.uniform(-1, 1, (nc, s, s, 3)), tf.float32),
           tf.constant(rng.integers(0, 5, nc), tf.int32))
    seg = (tf.constant(rng.uniform(-1, 1, (ns, s, s, 3)), tf.float32),
           tf.constant(rng.integers(0, cfg.model.num_seg_classes, (ns, s, s)), tf.int32))
    return clf, seg


def test_float16_joint_training_scales_both_losses_and_learns(tmp_path):
    cfg = _config("mixed_float16", SMALL, model_dir=str(tmp_path), steps=40)
    cfg.train.seg.warmup_steps = cfg.train.clf.warmup_steps = 0
    with use_precision(cfg):
        system = build_system(cfg)
        trainer = CooperativeTrainer(cfg, system)
    assert isinstance(trainer.clf_agent.optimizer, LSO)
    assert isinstance(trainer.seg_agent.optimizer, LSO)
    clf, seg = _batches(cfg)
    losses = [{k: float(v) for k, v in trainer.step_fn(clf, seg).items()} for _ in range(8)]
    assert all(np.isfinite(list(step.values())).all() for step in losses)
    assert bool(trainer.step_fn.all_finite.numpy())
    # The same batch again and again: both agents fit it, step after step (a step the
    # loss scaler skips for overflow would leave the loss unchanged).
    for key in ("clf_loss", "seg_loss"):
        curve = [step[key] for step in losses]
        assert curve[-1] < 0.95 * curve[0], curve
        assert sum(b < a for a, b in zip(curve, curve[1:])) >= 5, curve
    # Loss scaling was live: the dynamic scale is still a large power of two.
    for agent in trainer.agents:
        assert float(agent.optimizer.loss_scale) >= 2.0 ** 8
    assert _policy() == "float32"


def test_weight_decay_is_inside_the_scaled_loss():
    """The unscaled gradients of a float16 agent are those of task loss + weight decay."""
    with use_precision("mixed_float16"):
        model = tf.keras.Sequential([tf.keras.Input((4,)),
                                     tf.keras.layers.Dense(3, dtype="float32")])
    kernel = model.layers[0].kernel
    kernel.assign(tf.ones_like(kernel))
    sgd = tf.keras.optimizers.SGD(0.1)
    agent = Agent("a", model, model.trainable_variables, LSO(sgd), schedule=None,
                  loss_fn=lambda y, logits, n: tf.reduce_mean(logits) * 0.0,
                  weight_decay=0.5, batch_size=2)
    _, total, grads = _agent_update(agent, tf.ones([2, 4]), tf.zeros([2]))
    # Task gradient is zero, so the kernel's gradient is exactly wd * W.
    np.testing.assert_allclose(grads[0].numpy(), 0.5 * kernel.numpy(), rtol=1e-6)
    assert float(total) == pytest.approx(float(l2_penalty([kernel], 0.5)))


def test_float16_export_serves_float32(tmp_path):
    cfg = _config("mixed_float16", SMALL)
    with use_precision(cfg):
        system = build_system(cfg)
        s = cfg.model.input_size
        x = np.random.default_rng(0).uniform(0, 255, (2, s, s, 3)).astype("float32")
        # Non-trivial BN statistics, as after training.
        system.joint_model(tf.image.per_image_standardization(x), training=True)
        path = export_saved_model(system, cfg, str(tmp_path / "export"))
    assert _policy() == "float32"
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (spec,) = serve.structured_input_signature[1].values()
    assert spec.dtype == tf.float32
    assert {k: v.dtype for k, v in serve.structured_outputs.items()} == {
        "grade_probabilities": tf.float32, "grade": tf.int32,
        "segmentation_probabilities": tf.float32, "class_map": tf.int32}
    got = serve(images=tf.constant(x))
    want = system.joint_model(tf.image.per_image_standardization(x), training=False)
    # float16 activations: ~3 significant digits; probabilities agree to a few 1e-3.
    np.testing.assert_allclose(got["grade_probabilities"].numpy(),
                               tf.nn.softmax(want["grade_logits"]).numpy(), atol=5e-3)
    np.testing.assert_allclose(got["segmentation_probabilities"].numpy(),
                               tf.nn.softmax(want["seg_logits"]).numpy(), atol=5e-3)
    agree = np.mean(got["class_map"].numpy() == tf.argmax(want["seg_logits"], -1).numpy())
    assert agree > 0.99


def test_policy_is_reset_after_train_even_when_it_fails(tmp_path):
    from coopseg.training.train import train
    from data_pipelines.records import DataError

    cfg = _config("mixed_float16", model_dir=str(tmp_path / "run"))
    cfg.data.graded_train = str(tmp_path / "missing")  # fails after the models are built
    cfg.data.masks_train = str(tmp_path / "missing_masks")
    with pytest.raises((DataError, FileNotFoundError, ValueError)):
        train(cfg, export=False)
    assert _policy() == "float32"
