"""Shared test set-up: quiet TF logs, deterministic seeds, tiny configs."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer tests, excluded from the default run "
                                       "(run with -m slow)")


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
