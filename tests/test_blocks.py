import numpy as np
import tensorflow as tf

from coopseg.models.jointseg.blocks import (factorized_residual_inception_block,
                                            residual_inception_block)


def _count_kernels(model, shape_filter):
    return [w for w in model.weights if "kernel" in w.name and shape_filter(w.shape)]


def test_residual_inception_shapes_and_residual_path():
    x = tf.keras.Input((16, 16, 5))
    y = residual_inception_block(x, 12, name="blk")
    model = tf.keras.Model(x, y)
    out = model(np.random.rand(2, 16, 16, 5).astype("float32"))
    assert out.shape == (2, 16, 16, 12)
    assert float(tf.reduce_min(out)) >= 0.0  # ends in ReLU
    names = [layer.name for layer in model.layers]
    # four branches + fusion 3x3 + 1x1 shortcut + add (paper Fig. 2)
    for part in ("blk_b1_1x1_conv", "blk_b2_3x3_conv", "blk_b3_3x3b_conv", "blk_b4_pool",
                 "blk_fuse_3x3_conv", "blk_shortcut_conv", "blk_add"):
        assert part in names, part
    # every conv is followed by batch norm
    convs = [n for n in names if n.endswith("_conv")]
    assert all(n[: -len("_conv")] + "_bn" in names for n in convs)


def test_5x5_option_uses_a_5x5_kernel():
    x = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(x, residual_inception_block(x, 8, name="b", use_5x5=True))
    assert _count_kernels(model, lambda s: s[0] == 5 and s[1] == 5)


def test_factorized_block_has_no_square_kernels_above_1():
    x = tf.keras.Input((7, 7, 16))
    model = tf.keras.Model(x, factorized_residual_inception_block(x, 16, name="f"))
    assert model.output_shape == (None, 7, 7, 16)
    square = _count_kernels(model, lambda s: s[0] == s[1] and s[0] > 1)
    assert not square, [w.name for w in square]
    assert _count_kernels(model, lambda s: (s[0], s[1]) in ((1, 3), (3, 1)))


def test_factorized_block_has_fewer_parameters():
    x = tf.keras.Input((7, 7, 32))
    plain = tf.keras.Model(x, residual_inception_block(x, 32, name="p")).count_params()
    x2 = tf.keras.Input((7, 7, 32))
    fact = tf.keras.Model(x2, factorized_residual_inception_block(x2, 32, name="f")).count_params()
    assert fact < plain
