"""Partial attention gating (PAG) over encoder maps (paper Sec. II-B, Fig. 4, Eq. 3).

Each decoder output U_i is joined by the encoder maps E_j at least as large as it,
max-pooled to its size. The paper's figure of how they join is lost, so the combination
is an option (``none`` | ``concat`` | ``gated``, ``partial_attention_gate``).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import tensorflow as tf

from coopseg.models.layers.norm import batch_norm

layers = tf.keras.layers


def attention_factor(encoder_hw: Tuple[int, int], decoder_hw: Tuple[int, int]) -> int:
    """a_ij of Eq. 3: how many times smaller the decoder map is than the encoder map.

        a_ij = min(H_Ej, W_Ej) // min(H_Ui, W_Ui)                       (Eq. 3)

    E_j is the last map of encoder level j, before it is downsampled.
    """
    return min(encoder_hw) // min(decoder_hw)


def switch_on(encoder_hw: Tuple[int, int], decoder_hw: Tuple[int, int]) -> bool:
    """s_ij: the encoder map takes part only if it is at least as large as U_i."""
    return attention_factor(encoder_hw, decoder_hw) >= 1


def pool_to_decoder(encoder_map: tf.Tensor, factor: int, *, name: str) -> tf.Tensor:
    """op of Fig. 4: max-pool with window = stride = a_ij, identity for a_ij == 1
    (the paper's pooling "ensures maximally activated features")."""
    if factor == 1:
        return encoder_map
    return layers.MaxPooling2D(pool_size=factor, strides=factor, padding="valid",
                               name=f"{name}_pool{factor}")(encoder_map)


def _hw(t: tf.Tensor) -> Tuple[int, int]:
    return int(t.shape[1]), int(t.shape[2])


def gated_encoder_maps(decoder_map: tf.Tensor, encoder_maps: Sequence[tf.Tensor], *,
                       name: str) -> List[tf.Tensor]:
    """The switched-on encoder maps, each max-pooled to the decoder map's size."""
    u_hw = _hw(decoder_map)
    pooled = []
    for j, e in enumerate(encoder_maps):
        e_hw = _hw(e)
        if not switch_on(e_hw, u_hw):
            continue
        p = pool_to_decoder(e, attention_factor(e_hw, u_hw), name=f"{name}_e{j}")
        if _hw(p) != u_hw:
            raise ValueError(
                f"{name}: encoder map {j} of size {e_hw} pooled by a={attention_factor(e_hw, u_hw)} "
                f"gives {_hw(p)}, not the decoder size {u_hw}; use an input size divisible by "
                f"2 ** (levels + 1)")
        pooled.append(p)
    return pooled


def partial_attention_gate(decoder_map: tf.Tensor, encoder_maps: Sequence[tf.Tensor], *,
                           mode: str, name: str, bn_momentum: float = 0.99,
                           bn_epsilon: float = 1e-3, bn_sync: bool = False) -> tf.Tensor:
    """Combine decoder output U_i with the switched-on, pooled encoder maps (Fig. 4).

    The figure that shows how the pooled maps join U_i is lost, so ``mode`` chooses:

    - ``none``:   U_i alone (ablation: no encoder information).
    - ``concat``: U_i ⊕ pooled E_j; the decoder's conv block that follows fuses them.
    - ``gated``:  U_i ⊕ (sigmoid(conv1x1(U_i ⊕ P)) ⊙ BN(conv1x1(P))), P = ⊕_j pooled E_j.
                  The gate, computed from decoder and encoder features together, decides
                  per pixel and channel how much encoder detail to let through (default).
    """
    if mode == "none":
        return decoder_map
    pooled = gated_encoder_maps(decoder_map, encoder_maps, name=name)
    if not pooled:  # every switch off (U_i larger than all E_j): nothing to attend to
        return decoder_map
    p = pooled[0] if len(pooled) == 1 else layers.Concatenate(name=f"{name}_enc_concat")(pooled)
    if mode == "concat":
        return layers.Concatenate(name=f"{name}_concat")([decoder_map, p])
    if mode != "gated":
        raise ValueError(f"{name}: unknown PAG mode {mode!r}; choose none, concat or gated")
    filters = int(decoder_map.shape[-1])
    gate = layers.Concatenate(name=f"{name}_gate_in")([decoder_map, p])
    gate = layers.Conv2D(filters, 1, activation="sigmoid", name=f"{name}_gate")(gate)
    proj = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_proj_conv")(p)
    proj = batch_norm(f"{name}_proj_bn", bn_momentum, bn_epsilon, bn_sync)(proj)
    attended = layers.Multiply(name=f"{name}_attend")([gate, proj])
    return layers.Concatenate(name=f"{name}_concat")([decoder_map, attended])
