"""Shared test set-up: quiet TF logs, deterministic seeds, tiny configs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


# The modules that take longest (each 50-150 s of one worker on 2 cores, measured with
# --durations), collected first. pytest-xdist's --dist loadfile hands whole modules to the
# workers in collection order; a long module collected last (alphabetical order puts
# test_training_loop.py there) leaves one worker training alone at the end of the run.
LONGEST_FIRST = ("test_experiments.py", "test_cli_processes.py", "test_training_loop.py",
                 "test_reproducibility.py", "test_decouplednet_training.py",
                 "test_cooperative.py")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests, excluded from the default run "
                                       "(run with -m slow)")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


@pytest.fixture(autouse=True)
def _seed():
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def tiny_model_config():
    from experiments.scales import model_config
    return model_config("tiny")
