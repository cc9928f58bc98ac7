"""The neuron groups of one layer as Lava processes: their ports and Vars (the computations are in
models.py, the wiring in graph.py).

One process per neuron group of the core map (inspector.chip.mapper), so the graph is laid out
like the chip: a group's neurons run one neuron program on their cores, and groups talk only
through messages. The synapses between groups are Lava `Dense` processes (graph.py); each `proj_*`
process is the neurons those synapses feed, which saturate the accumulation and requantize it.

    x -> NormAttn =s_i,s_f,s_g=> [Dense i,f,g] -> ProjIFG -> MLGRU =s_o=> [Dense o] -> ProjO
      -> NormMlp (+ x, kept) =s_gate=> [Dense gate] -> ProjGate -> GLU =s_down=> [Dense down]
      -> ProjDown -> Residual (+ r, kept) -> x of the next layer

Every message is a vector of the group's values followed by two control elements, [reset, valid]
(`RESET`, `VALID`): valid = 1 marks a time step that carries data (ports send zeros otherwise), and
reset = 1 starts a new sequence (the MLGRU zeroes its state first). The Dense processes carry both
through one synapse each.

Each process also sends a readback message (`readback`) on the step it computes: the codes and
clipped masks of the sites it produced, how many messages each of its neurons sent through its
output ports, and how many update rounds its neurons ran; see `params.ReadbackLayout`. Arrays a
neuron program would keep in its core's memory (norm gains, lookup tables, the state h) are Vars;
scalar constants (multipliers, shifts, widths) are process parameters.
"""

from __future__ import annotations

import numpy as np

from inspector import schema as S
from inspector.backends.lava.params import LayerSpec, NormConst, ReadbackLayout
from inspector.lava_compat import install

install()

from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402

CONTROL = 2  # control elements at the end of every message
RESET, VALID = -2, -1


def _var(values: np.ndarray) -> Var:
    values = np.asarray(values, dtype=np.int32)
    return Var(shape=values.shape, init=values)


def _port_in(size: int) -> InPort:
    return InPort(shape=(size + CONTROL,))


def _port_out(size: int) -> OutPort:
    return OutPort(shape=(size + CONTROL,))


# Event-driven messaging (inspector.quant.messaging). A sending group keeps, per BitLinear it feeds,
# the delta encoder's state `delta_<p>` (3, N): act, residue, error, as Lava's Delta (lava.proc.sdn);
# the receiving group keeps `sigma_<p>` (N,): the sum of the W-weighted deltas delivered, as Lava's
# Sigma. A group that sends element-wise (a projection's outputs, the residual stream) keeps
# `delta_out` for its output port, and each group reading it `sigma_<its input port>`: the plain sum.
# All exist in every mode (zero and unused unless the sender is in `delta` mode).
SHORT = {p.name: p.short for p in S.PROJECTION_TABLE}
Messaging = dict[str, tuple[str, int, bool]]  # projection or element-wise messaging key -> (mode, vth, cum_error)
DENSE_INPUT = ("dense", 0, False)  # the messaging of layer 0's input: the host's embedding codes
IFG = S.GROUP_OF[S.PROJ_IFG].synapses  # the three token-mixer projections, fed by norm_attn
# The messaging keys of the groups that send element-wise (QuantConfig.messaging_<key>).
IFG_OUT, O_OUT, GATE_OUT, DOWN_OUT, RESIDUAL_OUT = (
    S.GROUP_OF[g].messaging for g in (S.PROJ_IFG, S.PROJ_O, S.PROJ_GATE, S.PROJ_DOWN, S.RESIDUAL)
)


def _encoders(process: AbstractProcess, sizes: dict[str, int]) -> None:
    for projection, size in sizes.items():
        setattr(process, f"delta_{SHORT[projection]}", Var(shape=(3, size), init=np.zeros((3, size), dtype=np.int32)))


def _sigmas(process: AbstractProcess, sizes: dict[str, int]) -> None:
    for projection, size in sizes.items():
        setattr(process, f"sigma_{SHORT[projection]}", Var(shape=(size,), init=np.zeros(size, dtype=np.int32)))


def _zeros(*shape: int) -> Var:
    """An encoder (3, N) or Sigma (N,) state of element-wise messaging, zero at the start."""
    return Var(shape=shape, init=np.zeros(shape, dtype=np.int32))


class _GroupProcess(AbstractProcess):
    """A neuron group of one layer: knows its layer's readback layout and sends its part of it."""

    group = ""

    def __init__(self, layout: ReadbackLayout, **params):
        super().__init__(layout=layout, **params)
        self.readback = OutPort(shape=(layout.size,))


class NormAttn(_GroupProcess):
    """norm_attn (D neurons): attention RMSNorm of the layer input x, then the input norms of the
    i, f and g BitLinears, whose spikes go to the three Dense processes."""

    group = S.NORM_ATTN

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, messaging: Messaging, input_messaging: tuple):
        norms = {"attn": spec.attn_norm, **{SHORT[p]: spec.proj_norms[p] for p in IFG}}
        super().__init__(layout, norms=norms, messaging=messaging, input_messaging=input_messaging)
        D = spec.hidden
        _encoders(self, dict.fromkeys(IFG, D))
        self.sigma_x_in = _zeros(D)
        self.x_in = _port_in(D)
        self.s_i, self.s_f, self.s_g = _port_out(D), _port_out(D), _port_out(D)
        self.gain_attn = _var(spec.attn_norm.gain)
        self.gain_i, self.gain_f, self.gain_g = (_var(spec.proj_norms[p].gain) for p in IFG)


class ProjIFG(_GroupProcess):
    """proj_ifg (3M neurons): the neurons of the i, f, g synapses; accumulation -> 12-bit codes."""

    group = S.PROJ_IFG

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, accumulator_bits: int, messaging: Messaging):
        outs = {SHORT[p]: spec.proj_out[p] for p in IFG}
        super().__init__(layout, requant=outs, accumulator_bits=accumulator_bits, messaging=messaging)
        M = spec.mixer
        _sigmas(self, dict.fromkeys(IFG, M))
        self.delta_out = _zeros(3, 3 * M)
        self.acc_i, self.acc_f, self.acc_g = _port_in(M), _port_in(M), _port_in(M)
        self.ifg_out = _port_out(3 * M)


class MLGRU(_GroupProcess):
    """mlgru (M neurons): forget and input gates (lookup tables), the recurrent state h, g_norm, the
    output gate g_norm * SiLU(h), and the o BitLinear's input norm (spikes to Dense o)."""

    group = S.MLGRU

    def __init__(
        self, spec: LayerSpec, layout: ReadbackLayout, internal_bits: int, gate_frac_bits: int, state_bits: int,
        messaging: Messaging,
    ):
        super().__init__(
            layout,
            messaging=messaging,
            internal_bits=internal_bits,
            gate_frac_bits=gate_frac_bits,
            state_bits=state_bits,
            has_lower_bound=spec.lower_bound is not None,
            input_to_state=spec.input_to_state,
            state_to_code=spec.state_to_code,
            gated_out=spec.gated_out,
            g_rms=spec.g_norm,
            o_norm=spec.proj_norms[S.O_PROJ],
        )
        M = spec.mixer
        _encoders(self, {S.O_PROJ: M})
        self.sigma_ifg_in = _zeros(3 * M)
        self.ifg_in = _port_in(3 * M)
        self.s_o = _port_out(M)
        self.h = Var(shape=(M,), init=np.zeros(M, dtype=np.int32))
        self.sigmoid_f = _var(spec.sigmoid_f)
        self.silu_i = _var(spec.silu_i)
        self.silu_h = _var(spec.silu_h)
        self.lower_bound = _var(spec.lower_bound if spec.lower_bound is not None else np.zeros(M))
        self.gain_g = _var(spec.g_norm.gain)
        self.gain_o = _var(spec.proj_norms[S.O_PROJ].gain)


class ProjO(_GroupProcess):
    """proj_o (D neurons): the neurons of the o synapses; accumulation -> 8-bit codes."""

    group = S.PROJ_O

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, accumulator_bits: int, messaging: Messaging):
        super().__init__(layout, requant=spec.proj_out[S.O_PROJ], accumulator_bits=accumulator_bits, messaging=messaging)
        _sigmas(self, {S.O_PROJ: spec.hidden})
        self.delta_out = _zeros(3, spec.hidden)
        self.acc_o = _port_in(spec.hidden)
        self.o_out = _port_out(spec.hidden)


class NormMlp(_GroupProcess):
    """norm_mlp (D neurons): the residual add r = x + o (x kept from when it arrived), the MLP
    RMSNorm and the gate_proj input norm (spikes to Dense gate); r goes on to `Residual`."""

    group = S.NORM_MLP

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, messaging: Messaging, input_messaging: tuple):
        super().__init__(
            layout, add=spec.residual_attn, mlp_rms=spec.mlp_norm, gate_norm=spec.proj_norms[S.GATE_PROJ], messaging=messaging,
            input_messaging=input_messaging,
        )
        D = spec.hidden
        _encoders(self, {S.GATE_PROJ: D})
        self.sigma_x_in, self.sigma_o_in = _zeros(D), _zeros(D)
        self.x_in = _port_in(D)
        self.o_in = _port_in(D)
        self.s_gate = _port_out(D)
        self.r_out = _port_out(D)
        self.x = Var(shape=(D,), init=np.zeros(D, dtype=np.int32))
        self.gain_mlp = _var(spec.mlp_norm.gain)
        self.gain_gate = _var(spec.proj_norms[S.GATE_PROJ].gain)


class ProjGate(_GroupProcess):
    """proj_gate (2I neurons): the neurons of the gate_proj synapses; the first I give the gate
    codes, the other I the y codes."""

    group = S.PROJ_GATE

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, accumulator_bits: int, messaging: Messaging):
        super().__init__(
            layout, requant={site: spec.proj_out[site] for site in S.PROJECTION_OF[S.GATE_PROJ].sites},
            accumulator_bits=accumulator_bits, messaging=messaging,
        )
        _sigmas(self, {S.GATE_PROJ: 2 * spec.inner})
        self.delta_out = _zeros(3, 2 * spec.inner)
        self.acc_gate = _port_in(2 * spec.inner)
        self.gy_out = _port_out(2 * spec.inner)


class GLU(_GroupProcess):
    """glu (I neurons): SiLU(gate) (lookup table) * y, requantized, and the down_proj input norm."""

    group = S.GLU_GROUP

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, internal_bits: int, messaging: Messaging):
        super().__init__(
            layout, internal_bits=internal_bits, glu_out=spec.glu_out, down_norm=spec.proj_norms[S.DOWN_PROJ],
            messaging=messaging,
        )
        _encoders(self, {S.DOWN_PROJ: spec.inner})
        self.sigma_gy_in = _zeros(2 * spec.inner)
        self.gy_in = _port_in(2 * spec.inner)
        self.s_down = _port_out(spec.inner)
        self.silu_gate = _var(spec.silu_gate)
        self.gain_down = _var(spec.proj_norms[S.DOWN_PROJ].gain)


class ProjDown(_GroupProcess):
    """proj_down (D neurons): the neurons of the down_proj synapses; accumulation -> 8-bit codes."""

    group = S.PROJ_DOWN

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, accumulator_bits: int, messaging: Messaging):
        super().__init__(layout, requant=spec.proj_out[S.DOWN_PROJ], accumulator_bits=accumulator_bits, messaging=messaging)
        _sigmas(self, {S.DOWN_PROJ: spec.hidden})
        self.delta_out = _zeros(3, spec.hidden)
        self.acc_down = _port_in(spec.hidden)
        self.d_out = _port_out(spec.hidden)


class Residual(_GroupProcess):
    """residual (D neurons): the layer output x = r + d (r kept from when it arrived)."""

    group = S.RESIDUAL

    def __init__(self, spec: LayerSpec, layout: ReadbackLayout, messaging: Messaging):
        super().__init__(layout, add=spec.residual_mlp, messaging=messaging)
        D = spec.hidden
        self.sigma_d_in, self.delta_out = _zeros(D), _zeros(3, D)
        self.r_in = _port_in(D)
        self.d_in = _port_in(D)
        self.x_out = _port_out(D)
        self.r = Var(shape=(D,), init=np.zeros(D, dtype=np.int32))


class FinalNorm(AbstractProcess):
    """final_norm (D neurons): the final RMSNorm. Its output goes to the host, so its readback is
    its output: [codes, clipped mask, update rounds, valid]."""

    group = S.FINAL_NORM_GROUP

    def __init__(self, norm: NormConst, input_messaging: tuple):
        super().__init__(norm=norm, input_messaging=input_messaging)
        size = len(norm.gain)
        self.sigma_x_in = _zeros(size)
        self.x_in = _port_in(size)
        self.gain = _var(norm.gain)
        self.readback = OutPort(shape=(2 * size + 2,))

