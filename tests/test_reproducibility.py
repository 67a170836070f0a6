"""One seed for everything: the same config trains to the same weights, bit for bit."""
import os

import numpy as np
import tensorflow as tf

from coopseg.models.registry import build_system
from coopseg.training.reproducibility import op_determinism_enabled, reproducible_run
from coopseg.training.train import train
from experiments.scales import experiment
from tests.helpers import subdir, tiny_synthetic_config


def _final_weights(model_dir: str) -> dict:
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name, _ in tf.train.list_variables(path)
            if "/.OPTIMIZER_SLOT/" not in name and not name.startswith("_CHECKPOINTABLE")}


def test_train_seeds_initialisation_and_data_from_train_seed(tmp_path, monkeypatch):
    data = subdir(tmp_path, "data")
    enabled = []
    enable = tf.config.experimental.enable_op_determinism
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism",
                        lambda: (enabled.append(True), enable()))

    def run(name: str, seed: int, deterministic: bool):
        # Something random in between, as in a process that did other work first:
        # train() must not depend on the global random state it is called in.
        tf.random.uniform([7])
        np.random.rand(3)
        cfg = tiny_synthetic_config(data, subdir(tmp_path, name), steps=8, checkpoint_every=8,
                                    eval_every=8, seed=seed, deterministic=deterministic)
        out = train(cfg, export=False)
        return _final_weights(cfg.run.model_dir), out["metrics"]

    first, first_metrics = run("a", seed=3, deterministic=True)
    assert not op_determinism_enabled()  # switched back off when the run ended
    assert enabled == [True]
    again, again_metrics = run("b", seed=3, deterministic=True)

    assert first.keys() == again.keys() and len(first) > 50
    different = [k for k in first if not np.array_equal(first[k], again[k])]
    assert not different, different[:5]
    assert first_metrics == again_metrics


def test_another_seed_initialises_other_weights(tmp_path):
    def initial_weights(seed: int) -> list:
        cfg = experiment("tiny", train={"seed": seed})
        with reproducible_run(cfg):
            return [w.numpy() for w in build_system(cfg).joint_model.weights]

    three, four, three_again = initial_weights(3), initial_weights(4), initial_weights(3)
    assert all(np.array_equal(a, b) for a, b in zip(three, three_again))
    kernels = [(a, b) for a, b in zip(three, four) if a.ndim == 4]
    assert kernels and not any(np.array_equal(a, b) for a, b in kernels)
