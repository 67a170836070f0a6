"""Open a finished (or interrupted) run directory: its config and latest checkpoint."""
from __future__ import annotations

import json
import os
from typing import Tuple

from coopseg.config import ConfigError, ExperimentConfig, from_dict


def load_run_config(model_dir: str) -> ExperimentConfig:
    """The ExperimentConfig a run was trained with (``<model_dir>/config.json``)."""
    if not model_dir:
        raise ConfigError("--model_dir is required")
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{model_dir} is not a coopseg run directory ({path} is missing)")
    with open(path) as f:
        return from_dict(json.load(f))


def load_run(model_dir: str) -> Tuple[ExperimentConfig, object]:
    """Config + model system restored from the run's latest checkpoint."""
    from coopseg.training.init import load_trained_system
    return load_run_config(model_dir), load_trained_system(model_dir)
