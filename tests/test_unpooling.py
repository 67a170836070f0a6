"""Max pooling with switches and unpooling (coopseg/models/decouplednet/unpooling.py)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from coopseg.models.decouplednet.unpooling import (MaxPoolWithArgmax, MaxUnpooling2D,
                                                   max_pool_with_switches, unpool_with_switches)


def _numpy_unpool(x: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Reference: put values[b, i, j, c] where x's 2x2 window (i, j) has its max."""
    out = np.zeros_like(x)
    b, h, w, c = x.shape
    for n in range(b):
        for i in range(h // 2):
            for j in range(w // 2):
                for k in range(c):
                    window = x[n, 2 * i:2 * i + 2, 2 * j:2 * j + 2, k]
                    di, dj = np.unravel_index(np.argmax(window), (2, 2))
                    out[n, 2 * i + di, 2 * j + dj, k] = values[n, i, j, k]
    return out


def test_hand_built_4x4_goes_back_to_argmax_positions():
    x = np.array([[1, 2, 0, 0],
                  [3, 4, 0, 5],
                  [0, 0, 9, 8],
                  [6, 0, 7, 1]], np.float32).reshape(1, 4, 4, 1)
    pooled, switches = max_pool_with_switches(tf.constant(x))
    np.testing.assert_array_equal(pooled.numpy()[0, ..., 0], [[4, 5], [6, 9]])
    restored = unpool_with_switches(pooled, switches).numpy()[0, ..., 0]
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1], expected[1, 3], expected[3, 0], expected[2, 2] = 4, 5, 6, 9
    np.testing.assert_array_equal(restored, expected)
    # Values other than the pooled ones land at the same positions.
    other = unpool_with_switches(tf.constant([[[[10.], [20.]], [[30.], [40.]]]]), switches)
    expected_other = np.zeros((4, 4), np.float32)
    expected_other[1, 1], expected_other[1, 3], expected_other[3, 0], expected_other[2, 2] = (
        10, 20, 30, 40)
    np.testing.assert_array_equal(other.numpy()[0, ..., 0], expected_other)


def test_random_batch_matches_numpy_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 8, 5)).astype(np.float32)
    values = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    _, switches = max_pool_with_switches(tf.constant(x))
    got = unpool_with_switches(tf.constant(values), switches).numpy()
    np.testing.assert_array_equal(got, _numpy_unpool(x, values))
    # Switches carry the batch index: unpooling one example alone gives the same map.
    _, single = max_pool_with_switches(tf.constant(x[2:3]))
    np.testing.assert_array_equal(unpool_with_switches(tf.constant(values[2:3]), single).numpy(),
                                  got[2:3])


def test_keras_layers_keep_static_shapes_and_pass_gradients_to_values():
    inp = tf.keras.Input((8, 8, 4))
    pooled, switches = MaxPoolWithArgmax(name="pool")(inp)
    restored = MaxUnpooling2D(name="unpool")([pooled * 2.0, switches])
    assert pooled.shape.as_list() == [None, 4, 4, 4]
    assert restored.shape.as_list() == [None, 8, 8, 4]
    model = tf.keras.Model(inp, restored)
    x = tf.random.stateless_normal([2, 8, 8, 4], seed=[1, 2])
    np.testing.assert_allclose(model(x).numpy(), _numpy_unpool(x.numpy(), 2 * tf.nn.max_pool2d(
        x, 2, 2, "VALID").numpy()), rtol=0, atol=0)

    values = tf.random.stateless_normal([2, 4, 4, 4], seed=[3, 4])
    weights = tf.random.stateless_normal([2, 8, 8, 4], seed=[5, 6])
    _, sw = max_pool_with_switches(x)
    with tf.GradientTape() as tape:
        tape.watch(values)
        loss = tf.reduce_sum(unpool_with_switches(values, sw) * weights)
    # d loss / d value = the weight at the position the value was sent to.
    expected = tf.reshape(tf.gather(tf.reshape(weights, [-1]), tf.reshape(sw, [-1])), values.shape)
    np.testing.assert_array_equal(tape.gradient(loss, values).numpy(), expected.numpy())
