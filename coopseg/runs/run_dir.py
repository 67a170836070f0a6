"""Open a finished (or interrupted) run directory: its config and latest checkpoint."""
from __future__ import annotations

import json
import os
from typing import Tuple

import tensorflow as tf
from absl import logging

from coopseg.config import ConfigError, ExperimentConfig, from_dict
from coopseg.models.registry import build_system
from coopseg.models.system import ModelSystem

CONFIG_NAME = "config.json"
CHECKPOINT_DIR = "checkpoints"


def load_run_config(run_dir: str) -> ExperimentConfig:
    """The ExperimentConfig a run was trained with (``<run_dir>/config.json``)."""
    if not run_dir:
        raise ConfigError("--model_dir is required")
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir} is not a coopseg run directory ({path} is missing)")
    with open(path) as f:
        return from_dict(json.load(f))


def load_trained_system(run_dir: str) -> ModelSystem:
    """Rebuild the model of a run and restore its latest checkpoint."""
    config = load_run_config(run_dir)
    checkpoints = os.path.join(run_dir, CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(checkpoints)
    if latest is None:
        raise ConfigError(f"no checkpoint in {checkpoints}")
    system = build_system(config)
    tf.train.Checkpoint(**system.parts).restore(latest).expect_partial()
    logging.info("Loaded %s (%s) from %s", config.name, config.method, latest)
    return system


def load_run(run_dir: str) -> Tuple[ExperimentConfig, ModelSystem]:
    """Config + model system restored from the run's latest checkpoint."""
    return load_run_config(run_dir), load_trained_system(run_dir)
