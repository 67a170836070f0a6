"""Find experiment configs by name: ``experiments/<name>.py`` defines ``get_config(scale)``.

Every experiment module returns an ``ExperimentConfig`` for a ``scale``:
``paper`` (the paper's sizes, for a GPU), ``small`` (CPU, minutes), ``tiny`` (tests).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import List

import experiments
from coopseg.config import ConfigError, ExperimentConfig

SCALES = ("paper", "small", "tiny")
_NOT_EXPERIMENTS = {"registry", "run", "runner", "common", "scales", "suites", "results",
                    "decouplednet_suite", "data_efficiency", "learning_curve"}


def list_experiments() -> List[str]:
    """Names of all experiment modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(experiments.__path__)
                  if m.name not in _NOT_EXPERIMENTS and not m.name.startswith("_"))


def get_experiment(name: str, scale: str = "small") -> ExperimentConfig:
    """The config of experiment ``name`` at ``scale``; ConfigError names the choices."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {SCALES}")
    names = list_experiments()
    if name not in names:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(names)}")
    module = importlib.import_module(f"experiments.{name}")
    config = module.get_config(scale)
    config.name = name
    return config
