"""CLI behaviour a user sees: clear errors for bad flags, data and directories."""
import os
import subprocess
import sys

import pytest

from coopseg.config import ConfigError, ExperimentConfig, override
from experiments.registry import get_experiment, list_experiments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args, timeout=240):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_override_coerces_and_rejects():
    cfg = ExperimentConfig()
    override(cfg, "train.seg.learning_rate", "0.5")
    override(cfg, "model.encoder_filters", "8,16")
    override(cfg, "data.flip", "false")
    assert cfg.train.seg.learning_rate == 0.5 and cfg.model.encoder_filters == (8, 16)
    assert cfg.data.flip is False
    with pytest.raises(ConfigError, match="unknown config field 'train.nope'"):
        override(cfg, "train.nope", "1")
    with pytest.raises(ConfigError, match="cannot set train.steps='many'"):
        override(cfg, "train.steps", "many")


def test_unknown_experiment_lists_choices():
    with pytest.raises(ConfigError, match="demo"):
        get_experiment("no_such_experiment")
    assert "demo" in list_experiments()


def test_train_cli_errors_are_one_clear_line(tmp_path):
    missing = str(tmp_path / "nowhere")
    res = _run("coopseg.cli.train", f"--graded_train={missing}", "--mode=clf_only",
               f"--model_dir={tmp_path / 'run'}", "--scale=tiny")
    assert res.returncode != 0
    assert "coopseg-train: error:" in res.stderr and "nowhere" in res.stderr
    assert "Traceback" not in res.stderr

    res = _run("coopseg.cli.train", "--pag_mode=sideways")
    assert res.returncode != 0 and "pag_mode" in res.stderr

    res = _run("coopseg.cli.train", "--set=model.input_size=100", "--scale=tiny",
               f"--model_dir={tmp_path / 'run'}")
    assert res.returncode != 0 and "divisible by" in res.stderr and "Traceback" not in res.stderr


def test_evaluate_and_export_need_a_run_dir(tmp_path):
    res = _run("coopseg.cli.evaluate", f"--model_dir={tmp_path}")
    assert res.returncode != 0 and "not a coopseg run directory" in res.stderr
    res = _run("coopseg.cli.export", f"--model_dir={tmp_path}")
    assert res.returncode != 0 and "not a coopseg run directory" in res.stderr
