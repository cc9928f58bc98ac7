"""Ternary synapses as Lava Dense processes compute exactly what the emulator computes, and the Lava
models' own integer arithmetic agrees with the emulator's kernels."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.backends.lava.synapses import ternary_dense
from inspector.lava_compat import install
from inspector.lm.ternary import exact_matmul
from inspector.quant import kernels as K


def lava_ternary_accumulate(spikes: np.ndarray, weight: np.ndarray, message_bits: int = 8) -> np.ndarray:
    """(T, in) integer spikes through (out, in) ternary synapses in Loihi2SimCfg: (T, out) accumulators."""
    install()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    steps, _ = spikes.shape
    # one extra step for Dense's one-step delay; the last input column is never delivered
    data = np.concatenate([spikes.T, np.zeros((spikes.shape[1], 1), dtype=spikes.dtype)], axis=1).astype(np.int32)
    source = Source(data=data)
    dense = ternary_dense(weight, message_bits)
    sink = Sink(shape=(weight.shape[0],), buffer=steps + 1)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=steps + 1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        received = sink.data.get()
    finally:
        sink.stop()
    return received[:, 1:].T.astype(np.int64)


def test_lava_dense_equals_emulator_accumulation():
    rng = np.random.default_rng(7)
    weight = rng.choice([-1, 0, 0, 1], size=(12, 20))
    spikes = rng.integers(-128, 128, size=(5, 20))
    spikes[0] = 127  # saturated inputs
    spikes[1] = -128
    spikes[2, ::2] = 0  # silent neurons send nothing
    lava = lava_ternary_accumulate(spikes, weight)
    emulator = exact_matmul(torch.tensor(spikes), torch.tensor(weight, dtype=torch.int8)).numpy()
    np.testing.assert_array_equal(lava, emulator)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 64),
    code_bits=st.sampled_from([8, 12, 24]),
    frac_bits=st.integers(4, 24),
    eps=st.integers(0, 50),
    out_bits=st.sampled_from([8, 12]),
    seed=st.integers(0, 2**31),
)
def test_lava_models_rmsnorm_equals_emulator_kernel(n, code_bits, frac_bits, eps, out_bits, seed):
    """The Lava models' numpy RMSNorm (one scalar integer square root) and the emulator's torch
    kernel (a vectorized, float-estimated and corrected one) are separate implementations of one
    equation: they must agree on every input, saturation and all-zero vectors included."""
    from inspector.backends.lava import models
    from inspector.backends.lava.params import NormConst

    rng = np.random.default_rng(seed)
    low, high = -(1 << (code_bits - 1)), 1 << (code_bits - 1)
    codes = rng.integers(low, high, size=n)
    if seed % 5 == 0:
        codes[:] = 0
    gain = rng.integers(-3000, 3000, size=n)
    multiplier, shift = K.fixed_multiplier(float(rng.uniform(1e-9, 1e-3)), 16)
    const = NormConst(gain.astype(np.int32), eps, frac_bits, multiplier, shift, out_bits)
    got, got_clipped = models.rms_norm(codes.astype(np.int64), const.gain, const)
    want, want_clipped = K.rmsnorm_int(torch.tensor(codes), torch.tensor(gain), eps, frac_bits, multiplier, shift, out_bits)
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(got_clipped, want_clipped.numpy())


@settings(max_examples=60, deadline=None)
@given(shift=st.integers(-4, 30), bits=st.integers(2, 24), seed=st.integers(0, 2**31))
def test_lava_models_requant_and_rounding_equal_emulator_kernels(shift, bits, seed):
    from inspector.backends.lava import models
    from inspector.backends.lava.params import RequantConst

    rng = np.random.default_rng(seed)
    values = rng.integers(-(1 << 30), 1 << 30, size=50)
    values[:4] = [0, -1, 1, -(1 << max(shift - 1, 0))]  # ties round half up, also for negatives
    multiplier = int(rng.integers(1, 1 << 16))
    got, got_clipped = models.requant(values, RequantConst(multiplier, shift, bits))
    want, want_clipped = K.requantize(torch.tensor(values), multiplier, shift, bits)
    np.testing.assert_array_equal(got, want.numpy())
    np.testing.assert_array_equal(got_clipped, want_clipped.numpy())
    np.testing.assert_array_equal(models.shift_round(values, shift), K.round_shift(torch.tensor(values), shift).numpy())
