"""Every method is named once: the config's list, the model builders, the tasks, and
the error; each task builds its method's models and inputs."""
import pytest

from coopseg.config import METHODS, ConfigError, ExperimentConfig
from coopseg.models.decouplednet.system import DecoupledNetSystem
from coopseg.models.registry import BUILDERS
from coopseg.models.system import ModelSystem
from coopseg.training import tasks
from coopseg.training.tasks import TASKS, DecoupledNetTask, Task, task_for


def test_config_builders_and_tasks_name_the_same_methods():
    assert tuple(BUILDERS) == METHODS
    assert sorted(TASKS) == sorted(METHODS)
    assert all(type(task) is not Task and task.method == name for name, task in TASKS.items())
    assert len({type(task) for task in TASKS.values()}) == len(METHODS)  # one class each


def test_tasks_pick_their_methods_inputs_and_initialisation(monkeypatch):
    monkeypatch.setattr(tasks, "graded_and_mask_inputs", lambda config, **_: "graded + masks")
    monkeypatch.setattr(tasks, "build_decoupled_inputs", lambda config, **_: "decoupled")
    for method, task in TASKS.items():
        config = ExperimentConfig(method=method)
        expected = "decoupled" if method in ("decouplednet", "deconvnet") else "graded + masks"
        assert tasks.build_inputs(config) == expected, method
        assert task_for(config) is task
    # Only DecoupledNet starts a fresh stage 2 from its stage-1 classifier run.
    assert [m for m, t in TASKS.items() if type(t).init_fn is not Task.init_fn] == ["decouplednet"]
    assert isinstance(TASKS["decouplednet"], DecoupledNetTask)
    # Two-step initialisation copies an encoder; only the segmenters that reuse one have it.
    assert {m for m, t in TASKS.items() if t.encoder_prefix} == {"jointseg", "fcn8s",
                                                                   "inception_unet"}
    with pytest.raises(ConfigError, match="unknown method 'unet3d'"):
        task_for(ExperimentConfig(method="unet3d"))


def test_an_unknown_method_is_rejected_by_validate():
    with pytest.raises(ConfigError, match=r"unknown method 'unet3d'; choose one of jointseg, "):
        ExperimentConfig(method="unet3d").validate()


def test_only_methods_with_the_diagnostic_predict_given_the_true_classes():
    plain = ModelSystem("jointseg", None, None)
    assert not plain.has_true_class_diagnostic and DecoupledNetSystem.has_true_class_diagnostic
    with pytest.raises(TypeError, match="has no true-class diagnostic"):
        plain.predict_classes_given_truth(None, None)
