"""The cooperation options: how the two agents' gradients on the shared encoder θ1 meet.

In the paper's step (Eq. 2) θ1 moves by the sum of both agents' whole steps, and when
the classifier pulls against the segmenter, joint training can segment worse than the
segmenter alone. ``EncoderGradientPolicy`` changes only the θ1 gradients (docs/method.md);
every function here is pure tensor maths, unit-tested in ``tests/test_cooperation.py``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from coopseg.config import CooperationConfig

GradsAndVars = List[Tuple[Optional[tf.Tensor], tf.Variable]]
_EPS = 1e-12


def _dot(a: Sequence[tf.Tensor], b: Sequence[tf.Tensor]) -> tf.Tensor:
    return tf.add_n([tf.reduce_sum(tf.cast(x, tf.float32) * tf.cast(y, tf.float32))
                     for x, y in zip(a, b)])


def scale_gradients(grads: Sequence[tf.Tensor], factor) -> List[tf.Tensor]:
    """Every gradient times ``factor`` (a scalar)."""
    return [g * tf.cast(factor, g.dtype) for g in grads]


def normalize_to_reference(grads: Sequence[tf.Tensor], reference: Sequence[tf.Tensor],
                           target: float) -> List[tf.Tensor]:
    """``grads`` rescaled so their global norm is ``target`` x ``reference``'s.

    A zero ``grads`` stays zero (nothing to rescale); a zero ``reference`` zeroes it.
    """
    norm = tf.linalg.global_norm(list(grads))
    wanted = target * tf.linalg.global_norm(list(reference))
    factor = tf.math.divide_no_nan(wanted, norm)
    return scale_gradients(grads, factor)


def pcgrad_pair(a: Sequence[tf.Tensor], b: Sequence[tf.Tensor]
                ) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
    """PCGrad for two tasks: ``(a', b')``.

    If ``a·b < 0``: ``a' = a - (a·b / |b|²) b`` and ``b' = b - (a·b / |a|²) a`` (both
    projected against the other's original gradient); otherwise both are unchanged.
    """
    dot = _dot(a, b)
    conflict = tf.cast(dot < 0.0, tf.float32)
    coef_a = conflict * dot / (_dot(b, b) + _EPS)
    coef_b = conflict * dot / (_dot(a, a) + _EPS)
    a_new = [x - tf.cast(coef_a, x.dtype) * y for x, y in zip(a, b)]
    b_new = [y - tf.cast(coef_b, y.dtype) * x for x, y in zip(a, b)]
    return a_new, b_new


def cosine(a: Sequence[tf.Tensor], b: Sequence[tf.Tensor]) -> tf.Tensor:
    """Cosine between two gradients (each a list of tensors, one vector); 0 if either is 0."""
    return tf.math.divide_no_nan(_dot(a, b), tf.sqrt(_dot(a, a)) * tf.sqrt(_dot(b, b)))


class EncoderGradientPolicy:
    """Applies ``CooperationConfig`` to the two agents' (gradient, variable) lists.

    ``shared_variables`` are θ1; the gradients of every other variable pass through.
    The policy acts on the θ1 part of the classifier's (and, for PCGrad, the
    segmenter's) gradient, after both exist and before either update:

    - ``clf_encoder_lr_scale``: the classifier's θ1 gradient times a constant (= its LR
      on θ1 relative to its head, exactly, for SGD with momentum, whose update is linear
      in the gradient).
    - ``normalize``: the classifier's θ1 gradient rescaled to ``balance_target`` x the
      segmenter's θ1 gradient norm (a fixed-ratio form of GradNorm, Chen et al. 2018,
      arXiv:1711.02257, which learns that ratio).
    - ``pcgrad``: PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning",
      arXiv:2001.06782) for two tasks: when the θ1 gradients conflict (negative inner
      product), each loses its component along the *other's original* gradient.

    The θ1 gradients are treated as one vector over all shared variables, as in PCGrad.
    Also reports the cosine between the two raw θ1 gradients (``encoder_grad_cosine``),
    which tells whether the agents pull together (> 0) or against each other (< 0).
    """

    def __init__(self, config: CooperationConfig, shared_variables: Sequence[tf.Variable]):
        self.config = config
        self._shared = {v.ref() for v in shared_variables}

    def _split(self, grads_and_vars: GradsAndVars) -> List[int]:
        return [i for i, (g, v) in enumerate(grads_and_vars)
                if g is not None and v.ref() in self._shared]

    def __call__(self, clf: GradsAndVars, seg: GradsAndVars
                 ) -> Tuple[GradsAndVars, GradsAndVars, Dict[str, tf.Tensor]]:
        clf_idx, seg_idx = self._split(clf), self._split(seg)
        seg_pos = {seg[i][1].ref(): i for i in seg_idx}
        # Pair θ1 gradients variable by variable (present in both agents' lists).
        pairs = [(i, seg_pos[clf[i][1].ref()]) for i in clf_idx if clf[i][1].ref() in seg_pos]
        if not pairs:
            return clf, seg, {}
        g_clf = [clf[i][0] for i, _ in pairs]
        g_seg = [seg[j][0] for _, j in pairs]
        metrics = {"encoder_grad_cosine": cosine(g_clf, g_seg)}
        c = self.config
        new_clf, new_seg = g_clf, g_seg
        if c.gradient_balance == "normalize":
            new_clf = normalize_to_reference(g_clf, g_seg, c.balance_target)
        elif c.gradient_balance == "pcgrad":
            new_clf, new_seg = pcgrad_pair(g_clf, g_seg)
        if c.clf_encoder_lr_scale != 1.0:
            new_clf = scale_gradients(new_clf, c.clf_encoder_lr_scale)
        clf, seg = list(clf), list(seg)
        for (i, j), gc, gs in zip(pairs, new_clf, new_seg):
            clf[i] = (gc, clf[i][1])
            seg[j] = (gs, seg[j][1])
        return clf, seg, metrics
