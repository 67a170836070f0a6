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
    override(cfg, "data.flip_up_down", "false")
    assert cfg.train.seg.learning_rate == 0.5 and cfg.model.encoder_filters == (8, 16)
    assert cfg.data.flip_up_down is False
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
    # Checked before the model is built: the failed start leaves no run directory.
    assert not (tmp_path / "run").exists()

    res = _run("coopseg.cli.train", "--pag_mode=sideways")
    assert res.returncode != 0 and "pag_mode" in res.stderr

    res = _run("coopseg.cli.train", "--set=model.input_size=100", "--scale=tiny",
               f"--model_dir={tmp_path / 'run'}")
    assert res.returncode != 0 and "divisible by" in res.stderr and "Traceback" not in res.stderr


def test_a_two_step_smoke_run_of_jointseg_just_works(tmp_path):
    # The tiny scale's 5-step warm-up is longer than the run: scaled to it and logged,
    # where it used to stop the run one agent at a time.
    res = _run("coopseg.cli.train", "--experiment=jointseg", "--scale=tiny", "--steps=2",
               f"--model_dir={tmp_path / 'r'}", f"--data_dir={tmp_path / 'data'}", "--noexport")
    assert res.returncode == 0, res.stderr[-2000:]
    for agent in ("seg", "clf"):
        assert f"train.{agent}.warmup_steps=5 is not shorter than the 2-step run: scaled to 0" \
            in res.stderr
    assert "Done: jointseg (jointseg, joint, 2 steps)" in res.stdout
    with open(tmp_path / "r" / "config.json") as f:
        import json
        train = json.load(f)["train"]
    assert train["steps"] == 2 and train["seg"]["warmup_steps"] == 0


def test_print_config_shows_the_effective_values_and_help_exits_0(tmp_path):
    import json
    res = _run("coopseg.cli.train", "--scale=tiny", "--steps=7", "--print_config",
               "--set=model.decoder_filters=64,32,16,8", f"--model_dir={tmp_path / 'r'}")
    assert res.returncode == 0, res.stderr[-2000:]
    config = json.loads(res.stdout[:res.stdout.rindex("}") + 1])
    assert config["name"] == "demo" and config["train"]["steps"] == 7
    assert config["model"]["decoder_filters"] == [64, 32, 16, 8]  # ints, not strings
    assert not (tmp_path / "r").exists()  # printing trains nothing
    for module in ("coopseg.cli.train", "coopseg.cli.predict", "coopseg.cli.convert"):
        res = _run(module, "--help")
        assert res.returncode == 0 and res.stdout.startswith("usage: "), (module, res.stdout[:200])
    assert "--print_config" in _run("coopseg.cli.train", "--help").stdout


def test_set_coerces_by_the_declared_type():
    cfg = get_experiment("demo", "tiny")
    override(cfg, "model.decoder_filters", "64,32,16,8")
    assert cfg.model.decoder_filters == (64, 32, 16, 8)
    override(cfg, "train.seg.clipnorm", "2.5")          # Optional[float], None by default
    assert cfg.train.seg.clipnorm == 2.5
    override(cfg, "train.seg.clipnorm", "none")
    assert cfg.train.seg.clipnorm is None
    override(cfg, "data.class_names", "background,a,b")
    assert cfg.data.class_names == ("background", "a", "b")
    for path, value, expected in [("model.decoder_filters", "64,x", "comma-separated ints"),
                                  ("train.steps", "2.5", "expected int"),
                                  ("train.steps", True, "expected int"),
                                  ("run.deterministic", "maybe", "expected bool"),
                                  ("train.seg.clipnorm", "big", "float or None")]:
        with pytest.raises(ConfigError, match=expected):
            override(cfg, path, value)
    with pytest.raises(ConfigError, match="group of fields.*train.seg.momentum"):
        override(cfg, "train.seg", "1")


def test_evaluate_and_export_need_a_run_dir(tmp_path):
    res = _run("coopseg.cli.evaluate", f"--model_dir={tmp_path}")
    assert res.returncode != 0 and "not a coopseg run directory" in res.stderr
    res = _run("coopseg.cli.export", f"--model_dir={tmp_path}")
    assert res.returncode != 0 and "not a coopseg run directory" in res.stderr


def _graded_folder_with_a_corrupt_jpeg(root):
    import cv2
    import numpy as np
    os.makedirs(root / "train")
    rows = ["image,level"]
    for i in range(6):
        img = np.full((80, 80, 3), 40 * i, np.uint8)
        cv2.imwrite(str(root / "train" / f"{i}_left.jpeg"), img)
        rows.append(f"{i}_left,{i % 5}")
    (root / "train" / "3_left.jpeg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "trainLabels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("validate", [False, True])
def test_strict_mode_names_the_corrupt_file(tmp_path, validate):
    _graded_folder_with_a_corrupt_jpeg(tmp_path / "graded")
    args = [f"--graded_train={tmp_path / 'graded'}", "--mode=clf_only", "--scale=tiny",
            "--steps=8", "--noskip_bad_images", f"--model_dir={tmp_path / 'run'}", "--noexport"]
    if validate:
        args.append("--validate_files")
    res = _run("coopseg.cli.train", *args)
    assert res.returncode != 0, res.stderr[-2000:]
    assert "coopseg-train: error:" in res.stderr and "3_left.jpeg" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_evaluate_prints_every_metric_as_a_table():
    from coopseg.cli.evaluate import metrics_table
    metrics = {"segmentation": {"miou": 0.5, "per_class_iou": {"background": 0.9, "drusen": None},
                                "confusion_matrix": [[1, 0], [0, 1]]},
               "classification": {"top1_accuracy": 0.25, "num_images": 8}}
    table = metrics_table(metrics).splitlines()
    assert any("segmentation/miou" in line and "0.5000" in line for line in table)
    assert any("per_class_iou/drusen" in line and "undefined" in line for line in table)
    assert any("classification/num_images" in line and "8" in line for line in table)
    assert not any("confusion_matrix" in line for line in table)  # lists are left to the JSON
