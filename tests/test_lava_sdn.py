"""Our sigma-delta messaging against Lava's own: `lava.proc.sdn` Delta (sender) and Sigma (receiver)
fixed-point process models, run in Loihi2SimCfg(select_tag="fixed_pt") on the same codes, send the
same messages and accumulate the same synaptic input as `inspector.quant.messaging`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.backends.lava.synapses import ternary_dense
from inspector.lava_compat import install
from inspector.quant.messaging import Messaging, transmit


def lava_sigma_delta(codes: np.ndarray, weight: np.ndarray, vth: int, cum_error: bool) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) codes -> Lava Delta -> (sent (T, N)) and -> ternary Dense -> Lava Sigma -> (input (T, out)).

    spike_exp = state_exp = 0: Lava's fixed-point Delta then shifts by nothing, so it is integer-exact.
    """
    install()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.sdn.process import Delta, Sigma

    steps, neurons = codes.shape
    # one extra step: Dense delivers at t + 1 what reached it at t
    data = np.concatenate([codes.T, codes.T[:, -1:]], axis=1).astype(np.int32)
    source = Source(data=data)
    delta = Delta(shape=(neurons,), vth=vth, cum_error=cum_error, spike_exp=0, state_exp=0)
    dense = ternary_dense(weight, message_bits=24)
    sigma = Sigma(shape=(weight.shape[0],))
    sent_sink = Sink(shape=(neurons,), buffer=steps + 1)
    input_sink = Sink(shape=(weight.shape[0],), buffer=steps + 1)
    source.s_out.connect(delta.a_in)
    delta.s_out.connect(sent_sink.a_in)
    delta.s_out.connect(dense.s_in)
    dense.a_out.connect(sigma.a_in)
    sigma.s_out.connect(input_sink.a_in)
    try:
        source.run(condition=RunSteps(num_steps=steps + 1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        sent, accumulated = sent_sink.data.get(), input_sink.data.get()
    finally:
        source.stop()
    return sent[:, :steps].T.astype(np.int64), accumulated[:, 1:].T.astype(np.int64)


@pytest.mark.parametrize("vth, cum_error", [(0, False), (6, False), (6, True)])
def test_lava_delta_and_sigma_agree_with_our_messaging(vth, cum_error):
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.integers(-9, 10, size=(8, 10)), axis=0) + rng.integers(-50, 50, 10)
    walk[rng.random(walk.shape) < 0.2] = 0
    codes = np.clip(walk, -128, 127)
    weight = rng.choice([-1, 0, 0, 1], size=(6, 10))
    lava_sent, lava_input = lava_sigma_delta(codes, weight, vth, cum_error)
    received, sent, _ = transmit(torch.tensor(codes)[None], Messaging("delta", vth, cum_error))
    np.testing.assert_array_equal(sent[0].numpy(), lava_sent)
    np.testing.assert_array_equal((received[0] @ torch.tensor(weight).T).numpy(), lava_input)
    assert (lava_sent != 0).sum() < codes.size  # the example really leaves some messages out
