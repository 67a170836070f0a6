"""Find experiments by name: ``experiments/rows/<name>.py``, at a scale.

``paper`` is the paper's sizes (for a GPU), ``small`` CPU minutes, ``tiny`` tests.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import List

from coopseg.config import ConfigError, ExperimentConfig
from experiments import rows
from experiments.common import Stage, single_stage
from experiments.scales import SCALES


def list_experiments() -> List[str]:
    """Names of all experiment modules in ``experiments/rows/``."""
    return sorted(m.name for m in pkgutil.iter_modules(rows.__path__)
                  if not m.name.startswith("_"))


def _row_module(name: str, scale: str):
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; choose one of {SCALES}")
    names = list_experiments()
    if name not in names:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(names)}")
    return importlib.import_module(f"experiments.rows.{name}")


def get_stages(name: str, scale: str = "small") -> List[Stage]:
    """The ordered training runs of experiment ``name`` at ``scale``: its ``get_stages``,
    or its one ``get_config`` as a single stage."""
    module = _row_module(name, scale)
    if hasattr(module, "get_stages"):
        return module.get_stages(scale)
    return single_stage(module.get_config(scale))


def get_experiment(name: str, scale: str = "small") -> ExperimentConfig:
    """The config ``coopseg-train --experiment=<name>`` trains: the row's ``get_config``,
    else its last stage. ConfigError names the choices."""
    module = _row_module(name, scale)
    if hasattr(module, "get_config"):
        config = module.get_config(scale)
    else:
        config = module.get_stages(scale)[-1].config
    config.name = name
    return config
