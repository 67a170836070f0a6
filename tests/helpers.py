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
