"""Shared builders for tests: a tiny synthetic set on disk and tiny experiment configs."""
from __future__ import annotations

import dataclasses
import os

from coopseg.config import RunConfig
from data_pipelines.synthetic import use_synthetic_data
from experiments.scales import experiment


def tiny_synthetic_config(data_dir: str, model_dir: str, **fields):
    """The tiny JointSeg experiment pointed at a tiny synthetic set in ``data_dir``;
    ``fields`` set ``train`` or ``run`` fields by name."""
    run_fields = {f.name for f in dataclasses.fields(RunConfig)}
    run = {k: v for k, v in fields.items() if k in run_fields}
    train = {k: v for k, v in fields.items() if k not in run_fields}
    cfg = experiment("tiny", train=train, run=dict(model_dir=model_dir, **run))
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


def logged_scalar(run_dir: str, tag: str) -> list:
    """The values of a scalar the trainer logged to TensorBoard, in step order."""
    import tensorflow as tf

    events = os.path.join(run_dir, "logs", "train")
    points = []
    for name in os.listdir(events):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(events, name)):
            points += [(event.step, float(tf.make_ndarray(v.tensor)))
                       for v in event.summary.value if v.tag == tag]
    return [value for _, value in sorted(points)]


def random_agent_batches(cfg, seed: int = 0):
    """Random ``(images, grades)`` and ``(images, masks)`` batches of the agents' sizes."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    s = cfg.model.input_size
    nc, ns = cfg.train.clf_agent().batch_size, cfg.train.seg.batch_size
    clf = (tf.constant(rng.normal(size=(nc, s, s, 3)), tf.float32),
           tf.constant(rng.integers(0, 5, nc), tf.int32))
    seg = (tf.constant(rng.normal(size=(ns, s, s, 3)), tf.float32),
           tf.constant(rng.integers(0, cfg.model.num_seg_classes, (ns, s, s)), tf.int32))
    return clf, seg
