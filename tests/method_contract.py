"""The contract every method in the method table keeps, in the style of keras-hub's
standard model tests: it builds; training steps change the variables its agents
train and no other trainable variable; a checkpoint restores every variable; the
SavedModel serves what the model in memory serves; a prediction from the export equals
one from the run directory. A new method is covered by being in the table (the two
``test_method_contract_*.py`` files run every other case each)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coopseg.config import IGNORE_LABEL, METHOD_SPECS, to_dict
from coopseg.config.methods import INCEPTIONV3_BACKBONE
from coopseg.serving.export import export_saved_model, serving_function
from coopseg.serving.predictor import load_predictor
from coopseg.training.loop import CooperativeTrainer
from coopseg.training.tasks import task_for
from experiments.decouplednet_stages import decoupled_experiment
from experiments.scales import experiment


def _modes(spec):
    """The agents a method trains, as ``train.mode``: a staged method's two stages."""
    if spec.staged:
        return ("clf_only", "seg_only")
    if spec.shared_encoder:
        return ("joint",)
    return ("clf_only",) if spec.has_classifier else ("seg_only",)


CASES = [(name, mode) for name, spec in METHOD_SPECS.items() for mode in _modes(spec)]


def _config(tmp_path, name: str, mode: str, run: str):
    spec = METHOD_SPECS[name]
    if spec.decoupled_family:
        cfg = decoupled_experiment("tiny", method=name, mode=mode, strong_per_class=0)
    else:
        # The smallest inputs each network takes (InceptionV3: 75 px and up).
        size = 96 if spec.backbone == INCEPTIONV3_BACKBONE else 64
        cfg = experiment("tiny", method=name, model={"input_size": size},
                         data={"resize_size": size + 8}, train={"mode": mode})
        if spec.vgg_trunk:
            cfg.model.vgg_width_multiplier = 1 / 16
    cfg.name = f"{name}_{mode}"
    cfg.run.model_dir = str(tmp_path / run)
    return cfg.validate()


def _batches(cfg, seed: int = 0):
    """Random batches in the shapes the method's agents take."""
    rng = np.random.default_rng(seed)
    spec, s = METHOD_SPECS[cfg.method], cfg.model.input_size
    classes = len(cfg.data.class_names) - 1
    nc, ns = cfg.train.clf_agent().batch_size, cfg.train.seg.batch_size
    images = lambda n: tf.constant(rng.normal(size=(n, s, s, 3)), tf.float32)  # noqa: E731
    labels = (rng.integers(0, 2, (nc, classes)) if spec.decoupled_family
              else rng.integers(0, cfg.model.num_grades, nc))
    clf = (images(nc), tf.constant(labels, tf.int32))
    if spec.class_conditional:  # (image, class) pairs and the class's mask
        masks = rng.integers(0, 2, (ns, s, s)) * (np.arange(ns)[:, None, None] % classes + 1)
        masks[0, 0, :4] = IGNORE_LABEL
        seg = ((images(ns), tf.constant(np.arange(ns) % classes, tf.int32)),
               tf.constant(masks, tf.int32))
    else:
        seg = (images(ns), tf.constant(rng.integers(0, classes + 1, (ns, s, s)), tf.int32))
    return clf, seg


def _variables(system):
    seen, out = set(), []
    for part in system.parts.values():
        for v in part.variables:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
    return out


def _trainer(cfg):
    task = task_for(cfg)
    system = task.build_system(cfg)
    trainer = CooperativeTrainer(cfg, system)
    trainer.restore_or_initialize(task.init_fn(cfg, system))
    return system, trainer


def _saved_run(cfg, trainer) -> None:
    """A run directory as ``train()`` leaves it: config.json and a checkpoint."""
    os.makedirs(cfg.run.model_dir, exist_ok=True)
    with open(os.path.join(cfg.run.model_dir, "config.json"), "w") as f:
        json.dump(to_dict(cfg), f)
    trainer.save()


def half(k: int):
    """Every other case, from ``k``: the contract runs in two test files, which pytest's
    two workers run side by side."""
    cases = CASES[k::2]
    return pytest.mark.parametrize("name,mode", cases, ids=[f"{n}-{m}" for n, m in cases])


def check_method_contract(tmp_path, name: str, mode: str) -> None:
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    cfg = _config(tmp_path, name, mode, "run")
    if mode == "seg_only" and METHOD_SPECS[name].staged:
        # Stage 2 starts from a stage-1 run, whose classifier it keeps frozen.
        stage1 = _config(tmp_path, name, "clf_only", "stage1")
        _saved_run(stage1, _trainer(stage1)[1])
        cfg.train.init_encoder_from = stage1.run.model_dir
    system, trainer = _trainer(cfg)

    # Training moves every variable the agents train, and no other trainable variable.
    # Two steps: FCN-8s' score layers start at zero (as in the FCN paper), so its
    # trunk's first gradient is zero and only its second step moves the trunk.
    variables = _variables(system)
    before = [v.numpy().copy() for v in variables]
    for seed in (0, 1):
        clf, seg = _batches(cfg, seed)
        trainer.step_fn(clf if trainer.clf_agent else None, seg if trainer.seg_agent else None)
    trained = {id(v) for agent in trainer.agents for v in agent.variables}
    moved = {id(v) for v, old in zip(variables, before) if not np.array_equal(v.numpy(), old)}
    assert trained, "no agent trains anything"
    stuck = [v.name for v in variables if id(v) in trained and id(v) not in moved]
    assert not stuck, f"trained variables that did not move: {stuck[:5]}"
    strays = [v.name for v in variables if v.trainable and id(v) in moved - trained]
    assert not strays, f"variables no agent trains moved: {strays[:5]}"

    # A checkpoint restores every variable (trainable or not) into a fresh build.
    _saved_run(cfg, trainer)
    tf.keras.backend.clear_session()
    restored, _ = _trainer(cfg)
    for v, w in zip(_variables(system), _variables(restored)):
        np.testing.assert_array_equal(v.numpy(), w.numpy(), err_msg=v.name)

    # The SavedModel serves what the model in memory serves ...
    export = export_saved_model(restored, cfg, str(tmp_path / "export"))
    size = max(cfg.model.input_size, cfg.data.working_size)
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)),
                         tf.float32)
    _, in_memory = serving_function(restored, cfg.model.input_size, cfg.data.working_size)
    served = tf.saved_model.load(export).signatures["serving_default"](images=images)
    expected = in_memory(images)
    assert set(served) == set(expected) and served
    for key in expected:
        np.testing.assert_allclose(served[key].numpy(), expected[key].numpy(), atol=1e-5,
                                   err_msg=key)
    # ... and predicting from the export equals predicting from the run directory.
    from_export = load_predictor(export)(images.numpy())
    from_run = load_predictor(cfg.run.model_dir)(images.numpy())
    assert set(from_export) == set(from_run)
    for key in from_run:
        np.testing.assert_allclose(from_export[key], from_run[key], atol=1e-5, err_msg=key)
