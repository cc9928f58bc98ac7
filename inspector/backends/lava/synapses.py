"""Ternary synapses on Lava's `Dense` process, bit-exact with the emulator's accumulation.

Lava's bit-accurate `Dense` model (lava/proc/dense/models.py, `PyDenseModelBitAcc`) stores weights
as 8-bit values in mixed-sign mode by dropping the least significant bit: `(w >> 1) << 1`, so +1
would become 0 and -1 would become -2. Ternary weights are therefore sent as 2w, and
`weight_exp = -1` shifts the accumulated input right by one, which is exact because every sum of
even numbers is even. With `num_message_bits` > 0 the input is a graded spike (our integer codes).
`Dense` delivers the accumulation of time step t at step t + 1.
"""

from __future__ import annotations

import numpy as np

from inspector.lava_compat import install


def ternary_dense(weight: np.ndarray, message_bits: int = 8):
    """A Lava `Dense` process whose accumulation is exactly sum_j W[o, j] * x[j] for ternary W."""
    install()
    from lava.proc.dense.process import Dense

    if not np.isin(weight, (-1, 0, 1)).all():
        raise ValueError("weights must be ternary")
    return Dense(weights=2 * np.asarray(weight, dtype=np.int32), weight_exp=-1, num_message_bits=message_bits)
