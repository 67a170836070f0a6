import dataclasses

import numpy as np
import pytest

from coopseg.config import ConfigError
from coopseg.models.jointseg.network import build_jointseg, encoder_output_shapes


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


def _pag_extra_params(cfg, mode):
    """(all, non-trainable) parameters the PAG of ``mode`` adds to the decoder over
    ``none``, derived from the layer shapes (attention.py, jointseg.build_decoder)
    rather than from the built model.

    Decoder step i upsamples to U_i with f_i channels. Encoder skip j (E_j) is switched
    on when min(E_j) // min(U_i) >= 1 (Eq. 3); P_i = the channels of those skips.
    ``concat`` widens the input of the step's 3x3 conv block (no bias) by P_i.
    ``gated`` adds a 1x1 sigmoid gate over U ⊕ P (with bias), a 1x1 projection of P
    (no bias) and its BN (gamma, beta + moving mean, variance), and widens the block's
    input by f_i (U ⊕ gated projection)."""
    shapes = encoder_output_shapes(cfg)
    size = shapes[0][0]
    total = non_trainable = 0
    for f in cfg.resolved_decoder_filters():
        size *= 2
        p = sum(c for h, w, c in shapes[1:] if min(h, w) // size >= 1)
        if p == 0 or mode == "none":  # every switch off: U_i passes alone in all modes
            continue
        if mode == "concat":
            total += 9 * p * f
        else:
            total += ((f + p) * f + f) + p * f + 4 * f + 9 * f * f
            non_trainable += 2 * f
    return total, non_trainable


def _non_trainable(model):
    return sum(int(np.prod(v.shape)) for v in model.non_trainable_weights)


def test_pag_modes_build_and_differ_in_size(tiny_model_config):
    # The derivation below counts the decoder's conv block as one 3x3 conv-BN-ReLU.
    assert tiny_model_config.decoder_block == "conv"
    built = {}
    for mode in ("none", "concat", "gated"):
        m = build_jointseg(dataclasses.replace(tiny_model_config, pag_mode=mode))
        names = [layer.name for layer in m.decoder.layers]
        assert any("_gate" in n for n in names) == (mode == "gated"), mode
        built[mode] = m
    none = built["none"]
    for mode in ("concat", "gated"):
        extra, extra_non_trainable = _pag_extra_params(tiny_model_config, mode)
        m = built[mode]
        # Exact, not just an ordering: a PAG that pooled the wrong skips (another switch
        # rule), dropped the gate's bias or BN, or fed the block the wrong width changes it.
        assert m.decoder.count_params() - none.decoder.count_params() == extra, mode
        assert _non_trainable(m.decoder) - _non_trainable(none.decoder) == extra_non_trainable
        # The PAG lives in the decoder alone: encoder and classifier are the same size,
        # so the whole joint model grows by exactly the decoder's difference.
        assert m.encoder.count_params() == none.encoder.count_params()
        assert m.classifier.count_params() == none.classifier.count_params()
        assert m.joint_model.count_params() - none.joint_model.count_params() == extra
    # For tiny (decoder steps of 24, 16, 8, 8 channels at 12, 24, 48, 96 px; skips of
    # 8, 16, 24 channels at 48, 24, 12 px) that is concat +14400 = 9 * (48*24 + 24*16 +
    # 8*8) and gated +12400 (8184 + 3408 + 808): gated is *smaller* than concat, because
    # its block sees U ⊕ f gated channels instead of U ⊕ all of P.
    sizes = {mode: m.decoder.count_params() for mode, m in built.items()}
    assert sizes["none"] < sizes["gated"] < sizes["concat"], sizes


def test_bad_input_size_is_a_clear_error(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, input_size=60)
    with pytest.raises(ConfigError, match="divisible by 16"):
        build_jointseg(cfg)


def test_mismatched_levels_error(tiny_model_config):
    cfg = dataclasses.replace(tiny_model_config, encoder_blocks=(1, 1))
    with pytest.raises(ConfigError, match="encoder_blocks"):
        build_jointseg(cfg)
