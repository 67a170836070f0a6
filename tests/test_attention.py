import numpy as np
import pytest
import tensorflow as tf

from coopseg.models.jointseg.attention import (attention_factor, gated_encoder_maps,
                                               partial_attention_gate, switch_on)


@pytest.mark.parametrize("e,u,a,on", [
    ((56, 56), (56, 56), 1, True),
    ((56, 56), (28, 28), 2, True),
    ((112, 112), (14, 14), 8, True),
    ((14, 14), (28, 28), 0, False),
    ((7, 9), (7, 7), 1, True),       # min over height and width (Eq. 3)
    ((32, 16), (8, 8), 2, True),
])
def test_attention_factor_and_switch(e, u, a, on):
    assert attention_factor(e, u) == a
    assert switch_on(e, u) is on


def test_only_larger_encoder_maps_are_pooled_to_decoder_size():
    u = tf.keras.Input((8, 8, 4))
    encs = [tf.keras.Input((s, s, 2)) for s in (32, 16, 8, 4)]
    pooled = gated_encoder_maps(u, encs, name="pag")
    assert len(pooled) == 3  # the 4x4 map is smaller than U: switch off
    assert all(tuple(p.shape[1:3]) == (8, 8) for p in pooled)


def test_pooling_is_max_with_window_a():
    e = tf.keras.Input((8, 8, 1))
    u = tf.keras.Input((2, 2, 1))
    model = tf.keras.Model([u, e], gated_encoder_maps(u, [e], name="pag")[0])
    x = np.arange(64, dtype="float32").reshape(1, 8, 8, 1)
    got = model([np.zeros((1, 2, 2, 1), "float32"), x]).numpy()[0, ..., 0]
    want = x[0, ..., 0].reshape(2, 4, 2, 4).max(axis=(1, 3))  # window = stride = a = 4
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("mode,channels", [("none", 6), ("concat", 6 + 3 + 5), ("gated", 12)])
def test_modes_output_channels(mode, channels):
    u = tf.keras.Input((8, 8, 6))
    encs = [tf.keras.Input((16, 16, 3)), tf.keras.Input((8, 8, 5)), tf.keras.Input((4, 4, 7))]
    out = partial_attention_gate(u, encs, mode=mode, name="pag")
    assert tuple(out.shape[1:]) == (8, 8, channels)


def test_gated_mode_depends_on_encoder_maps():
    u = tf.keras.Input((4, 4, 3))
    e = tf.keras.Input((8, 8, 2))
    model = tf.keras.Model([u, e], partial_attention_gate(u, [e], mode="gated", name="g"))
    uu = np.random.rand(1, 4, 4, 3).astype("float32")
    a = model([uu, np.random.rand(1, 8, 8, 2).astype("float32")]).numpy()
    b = model([uu, np.random.rand(1, 8, 8, 2).astype("float32")]).numpy()
    np.testing.assert_array_equal(a[..., :3], uu)  # U_i passes through unchanged
    assert not np.allclose(a[..., 3:], b[..., 3:])


def test_no_switched_on_map_returns_decoder_map_unchanged():
    u = tf.keras.Input((16, 16, 3))
    out = partial_attention_gate(u, [tf.keras.Input((8, 8, 2))], mode="gated", name="g")
    assert out is u
