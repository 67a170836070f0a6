import dataclasses

import numpy as np
import pytest

from coopseg.config import ConfigError
from coopseg.models.jointseg import build_jointseg, encoder_output_shapes


def test_shapes(tiny_model_config):
    cfg = tiny_model_config
    m = build_jointseg(cfg)
    x = np.random.rand(2, cfg.input_size, cfg.input_size, 3).astype("float32")
    out = m.joint_model(x)
    assert out["grade_logits"].shape == (2, cfg.num_grades)
    assert out["seg_logits"].shape == (2, cfg.input_size, cfg.input_size, cfg.num_seg_classes)
    feats = m.encoder(x)
    assert [tuple(f.shape[1:]) for f in feats] == encoder_output_shapes(cfg)


def test_parameter_groups_are_disjoint_and_shared(tiny_model_config):
    m = build_jointseg(tiny_model_config)
    enc = {id(v) for v in m.encoder.trainable_variables}
    clf = {id(v) for v in m.classifier.trainable_variables}
    dec = {id(v) for v in m.decoder.trainable_variables}
    assert enc and clf and dec and not (enc & clf) and not (enc & dec) and not (clf & dec)
    assert {id(v) for v in m.clf_model.trainable_variables} == enc | clf  # θ1 ∪ θ2
    assert {id(v) for v in m.seg_model.trainable_variables} == enc | dec  # θ1 ∪ θ3


@pytest.mark.parametrize("mode", ["none", "concat", "gated"])
def test_pag_modes_build_and_differ_in_size(tiny_model_config, mode):
    cfg = dataclasses.replace(tiny_model_config, pag_mode=mode)
    m = build_jointseg(cfg)
    names = [layer.name for layer in m.decoder.layers]
    assert any("_gate" in n for n in names) == (mode == "gated")
    assert m.decoder.count_params() > 0


def test_bad_input_size_is_a_clear_error(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, input_size=60)
    with pytest.raises(ConfigError, match="divisible by 16"):
        build_jointseg(cfg)


def test_mismatched_levels_error(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, encoder_blocks=(1, 1))
    with pytest.raises(ConfigError, match="encoder_blocks"):
        build_jointseg(cfg)
