"""Shared builders for tests: a tiny synthetic set on disk and tiny experiment configs."""
from __future__ import annotations

import os

from coopseg.cli.train import use_synthetic_data
from experiments.scales import experiment


def tiny_synthetic_config(data_dir: str, model_dir: str, **train):
    """The tiny JointSeg experiment pointed at a tiny synthetic set in ``data_dir``."""
    cfg = experiment("tiny", train=dict(model_dir=model_dir, **train))
    use_synthetic_data(cfg, data_dir, "tiny")
    return cfg.validate()


def subdir(tmp_path, name: str) -> str:
    path = os.path.join(str(tmp_path), name)
    os.makedirs(path, exist_ok=True)
    return path


def built_system_with_bn_statistics(cfg, batch: int = 3):
    """``build_system(cfg)`` after one training-mode forward pass on random images, so
    the BN moving statistics are the model's own and inference outputs depend on the
    image (a fresh model's are nearly constant). Returns ``(system, images)``: the
    images as float32 RGB 0..255 ``[batch, S, S, 3]``."""
    import numpy as np
    import tensorflow as tf

    from coopseg.models.registry import build_system
    system = build_system(cfg)
    s = cfg.model.input_size
    images = np.random.default_rng(0).uniform(0, 255, (batch, s, s, 3)).astype("float32")
    system.joint_model(tf.image.per_image_standardization(images), training=True)
    return system, images
