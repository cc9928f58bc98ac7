"""Custom Lava neuron processes for operations Lava's library has no exact match for.

`IntRMSNorm`: the integer RMSNorm of a graded-spike vector (sum of squares, exact inverse square
root, fixed-point gain, multiply-and-shift requantization), as one vector neuron process. Lava's
`NormVecDelay` and `InvSqrt` (lava.proc.graded) work in their own fixed-point formats, which we have
not matched bit for bit; this process calls the emulator's own kernel in its fixed-point process
model instead, so the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np
import torch

from inspector.lava_compat import install
from inspector.quant import kernels as K

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402


class IntRMSNorm(AbstractProcess):
    """Graded spikes in, normalized graded spikes out, in the same time step."""

    def __init__(self, weight_q: np.ndarray, eps_q: int, frac_bits: int, multiplier: int, shift: int, bits: int, **kwargs):
        super().__init__(**kwargs)
        shape = (len(weight_q),)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.weight_q = Var(shape=shape, init=np.asarray(weight_q, dtype=np.int32))
        self.params = Var(shape=(5,), init=np.array([eps_q, frac_bits, multiplier, shift, bits], dtype=np.int64))
        self.clipped = Var(shape=shape, init=np.zeros(shape, dtype=np.int32))


@implements(proc=IntRMSNorm, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyIntRMSNormFixed(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    weight_q: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    params: np.ndarray = LavaPyType(np.ndarray, np.int64)
    clipped: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)

    def run_spk(self) -> None:
        codes = torch.from_numpy(self.a_in.recv().astype(np.int64))
        eps_q, frac_bits, multiplier, shift, bits = (int(v) for v in self.params)
        out, clipped = K.rmsnorm_int(codes, torch.from_numpy(self.weight_q.astype(np.int64)), eps_q, frac_bits, multiplier, shift, bits)
        self.clipped[:] = clipped.numpy().astype(np.int32)
        self.s_out.send(out.numpy().astype(np.int32))
