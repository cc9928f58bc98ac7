"""Ternary synapses as Lava Dense processes compute exactly what the emulator computes."""

from __future__ import annotations

import numpy as np
import torch

from inspector.lava.synapses import lava_ternary_accumulate
from inspector.quant import kernels as K


def test_lava_dense_equals_emulator_accumulation():
    rng = np.random.default_rng(7)
    weight = rng.choice([-1, 0, 0, 1], size=(12, 20))
    spikes = rng.integers(-128, 128, size=(5, 20))
    spikes[0] = 127  # saturated inputs
    spikes[1] = -128
    spikes[2, ::2] = 0  # silent neurons send nothing
    lava = lava_ternary_accumulate(spikes, weight)
    emulator = K.ternary_matmul(torch.tensor(spikes), torch.tensor(weight)).numpy()
    np.testing.assert_array_equal(lava, emulator)
