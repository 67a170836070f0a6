"""Every method is named once, in the method table: nothing else in coopseg/ spells a
method's name, every entry's builder, network and task resolve, and each task builds
its method's inputs and initialisation as the entry says."""
import ast
import os

import pytest

from coopseg.config import METHOD_SPECS, METHODS, ConfigError, ExperimentConfig
from coopseg.config.methods import resolve
from coopseg.models.decouplednet.system import DecoupledNetSystem
from coopseg.models.system import ModelSystem
from coopseg.training import tasks
from coopseg.training.tasks import DecoupledNetTask, Task, task_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join("coopseg", "config", "methods.py")


def method_name_literals(root: str = ROOT):
    """(file:line, name) of every string literal in coopseg/ that is a method's name,
    outside the method table."""
    found = []
    for dirpath, _, files in os.walk(os.path.join(root, "coopseg")):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if not name.endswith(".py") or os.path.relpath(path, root) == TABLE:
                continue
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
                if isinstance(node, ast.Constant) and node.value in METHODS:
                    found.append((f"{os.path.relpath(path, root)}:{node.lineno}", node.value))
    return found


def test_only_the_method_table_names_a_method(tmp_path):
    assert method_name_literals() == []
    # The scan sees what it claims to: a literal in any module of coopseg/.
    (tmp_path / "coopseg").mkdir()
    (tmp_path / "coopseg" / "x.py").write_text('if method == "fcn8s":\n    pass\n')
    assert method_name_literals(str(tmp_path)) == [(os.path.join("coopseg", "x.py") + ":1",
                                                    "fcn8s")]


@pytest.mark.parametrize("name", METHODS)
def test_every_entry_resolves(name):
    spec = METHOD_SPECS[name]
    assert callable(resolve(spec.builder))
    assert issubclass(resolve(spec.task), Task)
    assert not spec.network or callable(resolve(spec.network))
    assert spec.heads and set(spec.heads) <= {"classifier", "segmenter"}
    assert not spec.shared_encoder or (spec.has_classifier and spec.has_segmenter)
    assert not spec.staged or (spec.has_classifier and spec.has_segmenter)


def test_tasks_pick_their_methods_inputs_and_initialisation(monkeypatch):
    monkeypatch.setattr(tasks, "graded_and_mask_inputs", lambda config, **_: "graded + masks")
    monkeypatch.setattr(tasks, "build_decoupled_inputs", lambda config, **_: "decoupled")
    for name, spec in METHOD_SPECS.items():
        config = ExperimentConfig(method=name)
        expected = "decoupled" if spec.decoupled_family else "graded + masks"
        assert tasks.build_inputs(config) == expected, name
        assert task_for(config).spec is spec
    # Only a staged method starts a fresh stage 2 from its stage-1 classifier run.
    staged = [n for n in METHODS if type(task_for(ExperimentConfig(method=n))).init_fn
              is not Task.init_fn]
    assert staged == [n for n, s in METHOD_SPECS.items() if s.staged]
    assert all(isinstance(task_for(ExperimentConfig(method=n)), DecoupledNetTask)
               for n in staged)
    with pytest.raises(ConfigError, match="unknown method 'unet3d'"):
        task_for(ExperimentConfig(method="unet3d"))


def test_an_unknown_method_is_rejected_by_validate():
    with pytest.raises(ConfigError, match=rf"unknown method 'unet3d'; choose one of {METHODS[0]}, "):
        ExperimentConfig(method="unet3d").validate()


def test_only_methods_with_the_diagnostic_predict_given_the_true_classes():
    plain = ModelSystem(METHODS[0], None, None)
    assert not plain.has_true_class_diagnostic and DecoupledNetSystem.has_true_class_diagnostic
    with pytest.raises(TypeError, match="has no true-class diagnostic"):
        plain.predict_classes_given_truth(None, None)
