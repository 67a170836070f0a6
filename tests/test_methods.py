"""Every method is named once: the config's list, the model builders, and the error."""
import pytest

from coopseg.config import METHODS, ConfigError, ExperimentConfig
from coopseg.models.registry import BUILDERS


def test_config_and_builders_name_the_same_methods():
    assert tuple(BUILDERS) == METHODS


def test_an_unknown_method_is_rejected_by_validate():
    with pytest.raises(ConfigError, match=r"unknown method 'unet3d'; choose one of jointseg, "):
        ExperimentConfig(method="unet3d").validate()
