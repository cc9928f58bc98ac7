"""The Python 3.11 compatibility patch for lava-nc 0.10.0 lets Lava's fixed-point simulator run."""

from __future__ import annotations

import numpy as np

from inspector.lava_compat import install, lava_available, patch_multiprocessing_source, patch_var_model_source


def test_patch_rewrites_only_the_unhashable_defaults():
    source = (
        "from __future__ import annotations\n"
        "from dataclasses import dataclass, InitVar\n"
        "@dataclass\nclass CoreEncoder:\n    x: ByteEncoder = ByteEncoder()\n    n: int = 3\n"
    )
    patched = patch_var_model_source(source)
    assert "x: ByteEncoder = field(default_factory=ByteEncoder)" in patched
    assert "n: int = 3" in patched
    assert patched.startswith("from __future__ import annotations\nfrom dataclasses import field, dataclass")


def test_start_method_patch():
    assert "force=True" in patch_multiprocessing_source("if x:\n    mp.set_start_method('fork')\n")


def test_dense_network_runs_bit_accurately_in_loihi2_sim():
    import multiprocessing

    multiprocessing.get_start_method()  # what test runners and servers do: the context is now set
    install()
    ok, reason = lava_available()
    assert ok, reason
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    spikes = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 0, 1]])
    # Loihi 2 stores 8-bit weights in mixed-sign mode with an even mantissa: use even weights.
    weights = np.array([[2, -2], [2, 2], [4, 0]])
    source = Source(data=spikes)
    dense = Dense(weights=weights)
    sink = Sink(shape=(3,), buffer=5)
    source.s_out.connect(dense.s_in)
    dense.a_out.connect(sink.a_in)
    try:
        sink.run(condition=RunSteps(num_steps=5), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        received = sink.data.get()
    finally:
        sink.stop()
    # Dense delivers the weighted input one time step later.
    expected = np.zeros((3, 5))
    expected[:, 1:] = weights @ spikes[:, :-1]
    np.testing.assert_array_equal(received, expected)
