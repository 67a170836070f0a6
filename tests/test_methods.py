"""Every method is named once: the config's list, the model builders, and the error."""
import pytest

from coopseg.config import METHODS, ConfigError, ExperimentConfig
from coopseg.models.decouplednet_system import DecoupledNetSystem
from coopseg.models.registry import BUILDERS
from coopseg.models.system import ModelSystem


def test_config_and_builders_name_the_same_methods():
    assert tuple(BUILDERS) == METHODS


def test_an_unknown_method_is_rejected_by_validate():
    with pytest.raises(ConfigError, match=r"unknown method 'unet3d'; choose one of jointseg, "):
        ExperimentConfig(method="unet3d").validate()


def test_only_methods_with_the_diagnostic_predict_given_the_true_classes():
    plain = ModelSystem("jointseg", None, None)
    assert not plain.has_true_class_diagnostic and DecoupledNetSystem.has_true_class_diagnostic
    with pytest.raises(TypeError, match="has no true-class diagnostic"):
        plain.predict_classes_given_truth(None, None)
