"""Model outputs as the outside world sees them."""
from __future__ import annotations

from typing import Dict

import tensorflow as tf


def float32_outputs(out: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Floating outputs as float32 (a half-precision head must not leak into a signature)."""
    return {k: tf.cast(v, tf.float32) if v.dtype.is_floating else v for k, v in out.items()}
