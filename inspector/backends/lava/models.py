"""Fixed-point process models of the neuron groups (processes.py), written from the equations.

This is a second implementation of the integer model's neuron arithmetic, in numpy integers, next
to the emulator's (inspector/quant/kernels.py, integer_model.py, in torch). It shares their data
(widths, lookup tables, gains, multipliers and shifts; see params.py) and none of their code, so
the bit-exact test between the Lava backend and the emulator compares two implementations.

The operations, as a neuron program on Loihi 2 would do them (all integers, int64 here):

    shift_round(v, s) = (v + 2^(s-1)) >> s                 (round half up; s < 0 shifts left)
    clip(v, b)        = min(max(v, -2^(b-1)), 2^(b-1) - 1)  (and which values were clipped)
    requant(v)        = clip(shift_round(v * multiplier, shift), bits)
    rms_norm(x)       = requant(x * isqrt(2^(2F) // (round(sum(x^2) / n) + eps)) * gain)
    lookup(T, c)      = T[c + 2^(bits-1)]                   (one table entry per input code)

Ports, Vars and messages are int32 with 24-bit precision, as in Lava's own fixed-point models.
"""

from __future__ import annotations

import math

import numpy as np

from inspector import schema as S
from inspector.backends.lava.params import AddConst, NormConst, ReadbackLayout, RequantConst
from inspector.backends.lava.processes import (
    CONTROL,
    DOWN_OUT,
    GATE_OUT,
    GLU,
    IFG,
    IFG_OUT,
    MLGRU,
    O_OUT,
    RESET,
    RESIDUAL_OUT,
    SHORT,
    VALID,
    FinalNorm,
    NormAttn,
    NormMlp,
    ProjDown,
    ProjGate,
    ProjIFG,
    ProjO,
    Residual,
)
from inspector.lava_compat import install

install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402

Codes = np.ndarray  # int64 values
Clipped = np.ndarray  # bool, same shape


# -- the arithmetic -------------------------------------------------------------------------------
def shift_round(value: Codes, shift: int) -> Codes:
    if shift > 0:
        return (value + (1 << (shift - 1))) >> shift
    if shift < 0:
        return value << -shift
    return value


def clip(value: Codes, bits: int) -> tuple[Codes, Clipped]:
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(value, low, high), (value < low) | (value > high)


def requant(value: Codes, c: RequantConst) -> tuple[Codes, Clipped]:
    return clip(shift_round(value * c.multiplier, c.shift), c.bits)


def residual_add(a: Codes, b: Codes, c: AddConst) -> tuple[Codes, Clipped]:
    return clip(shift_round(a * c.m_a + b * c.m_b, c.shift), c.bits)


def rms_norm(codes: Codes, gain: np.ndarray, c: NormConst) -> tuple[Codes, Clipped]:
    """One reduction per vector (sum of squares), then one scalar inverse square root for all neurons."""
    n = codes.shape[0]
    squares = int(np.dot(codes, codes))
    mean_square = (2 * squares + n) // (2 * n) + c.eps  # round(sum / n), half up
    inv = math.isqrt((1 << (2 * c.frac_bits)) // mean_square) if mean_square > 0 else 0
    return requant(codes * inv * gain.astype(np.int64), RequantConst(c.multiplier, c.shift, c.bits))


def lookup(table: np.ndarray, codes: Codes, bits: int) -> Codes:
    return table.astype(np.int64)[codes + (1 << (bits - 1))]


def delta_encode(codes: Codes, state: np.ndarray, vth: int, cum_error: bool) -> tuple[Codes, np.ndarray]:
    """One step of Lava's Delta encoder (lava.proc.sdn, spike_exp = state_exp = 0): (sent, new state).

    state (3, N) = act, residue, error:  delta = codes - act + residue; sent = delta where |delta| >= vth
    (with cum_error: where |error + delta| >= vth, and the error is reset where sent); residue = delta - sent.
    """
    act, residue, error = (row.astype(np.int64) for row in state)
    delta = codes - act + residue
    if cum_error:
        error = error + delta
        sent = np.where(np.abs(error) >= vth, delta, 0)
        error = np.where(sent != 0, 0, error)
    else:
        sent = np.where(np.abs(delta) >= vth, delta, 0)
    return sent, np.stack([codes, delta - sent, error])


def encode(setting: tuple[str, int, bool], encoder: np.ndarray, codes: Codes, reset: int) -> Codes:
    """What neurons with these codes send under a messaging setting (mode, vth, cum_error): the
    codes (dense), the codes of at least vth (threshold) or Lava's Delta (0 = no message).
    `encoder` (3, N) is their delta state, zeroed when a new sequence starts."""
    mode, vth, cum_error = setting
    if mode == "dense":
        return codes
    if mode == "threshold":
        return np.where(np.abs(codes) >= vth, codes, 0)
    if reset == 1:
        encoder[:] = 0
    sent, encoder[:] = delta_encode(codes, encoder, vth, cum_error)
    return sent


def accumulate(setting: tuple[str, int, bool], sigma: np.ndarray, values: Codes, reset: int) -> Codes:
    """What a receiver takes: the values delivered, or, when the senders send deltas, their running
    sum (a Sigma; for synapses, W times the sum of the deltas), zeroed when a new sequence starts."""
    if setting[0] != "delta":
        return values
    if reset == 1:
        sigma[:] = 0
    sigma[:] = sigma.astype(np.int64) + values
    return sigma.astype(np.int64)


def nonzero(*vectors: Codes) -> np.ndarray:
    """Messages per neuron: a neuron sends a graded spike for each nonzero value (zeros are free)."""
    return sum((v != 0).astype(np.int32) for v in vectors)


# -- shared model plumbing -----------------------------------------------------------------------
IN = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
OUT = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)


def state(precision: int = 24) -> LavaPyType:
    return LavaPyType(np.ndarray, np.int32, precision=precision)


def message(values: Codes, reset: int) -> np.ndarray:
    """[values..., reset, valid = 1]."""
    return np.concatenate([values, [reset, 1]]).astype(np.int32)


def data(received: np.ndarray) -> Codes:
    return received[:-CONTROL].astype(np.int64)


class _GroupModel(PyLoihiProcessModel):
    """A neuron group: sends zeros on steps without data, and its readback part when it computes."""

    group = ""

    def __init__(self, proc_params):
        super().__init__(proc_params)
        layout: ReadbackLayout = proc_params["layout"]
        self.layout = layout
        self.slots = {slot.site: slot for slot in layout.slots if slot.group == self.group}
        self.clip_offset = layout.codes_size
        self.messages_at = layout.messages_slice(self.group)
        self.rounds_at = layout.rounds_index(self.group)
        self._zeros: dict[tuple, np.ndarray] = {}

    def quiet(self, *ports) -> None:
        """A step without data: every output port sends zeros (a receiver blocks until it gets a message)."""
        for port in (*ports, self.readback):
            zeros = self._zeros.get(port.shape)
            if zeros is None:  # allocated once per shape: most steps of a token are quiet ones
                zeros = self._zeros[port.shape] = np.zeros(port.shape, np.int32)
            port.send(zeros)

    def send_spikes(self, projection: str, spikes: Codes, reset: int) -> Codes:
        """What a BitLinear's input neurons send under their messaging mode (0 = no message)."""
        return encode(self.proc_params["messaging"][projection], getattr(self, f"delta_{SHORT[projection]}"), spikes, reset)

    def send_out(self, key: str, codes: Codes, reset: int) -> Codes:
        """What the group's neurons send element-wise under messaging key `key` (0 = no message)."""
        return encode(self.proc_params["messaging"][key], self.delta_out, codes, reset)

    def receive_synapses(self, projection: str, received: np.ndarray) -> Codes:
        """What a projection's neurons take as their synaptic input: what the Dense delivered, or, when
        the senders send deltas, its running sum (a Sigma: W times the sum of the deltas)."""
        sigma = getattr(self, f"sigma_{SHORT[projection]}")
        return accumulate(self.proc_params["messaging"][projection], sigma, data(received), received[RESET])

    def receive(self, setting: tuple[str, int, bool], sigma: np.ndarray, received: np.ndarray) -> Codes:
        """The codes an element-wise message stands for: as delivered, or the Sigma of the deltas."""
        return accumulate(setting, sigma, data(received), received[RESET])

    def report(
        self, sites: dict[str, tuple[Codes, Clipped | None]], messages: np.ndarray, sent: dict[str, Codes] | None = None
    ) -> None:
        out = np.zeros(self.layout.size, np.int32)
        for site, values in (sent or {}).items():
            out[self.layout.sent_slice(site)] = values
        for site, (codes, clipped) in sites.items():
            slot = self.slots[site]
            out[slot.offset : slot.offset + slot.size] = codes
            if clipped is not None:
                start = self.clip_offset + slot.offset
                out[start : start + slot.size] = clipped
        out[self.messages_at] = messages
        out[self.rounds_at] = 1  # the group's neurons updated once for this token
        out[-1] = 1  # one more process reported
        self.readback.send(out)


class _ProjectionModel(_GroupModel):
    """A projection group with one synapse input (o_proj, down_proj): saturate what its Dense
    delivered in the accumulator register, requantize it into the next group's code."""

    site = ""  # the projection's probed site; its accumulator is `site.accumulator`
    key = ""  # the messaging key of its element-wise output

    def project(self, accumulator: PyInPort, out: PyOutPort) -> None:
        received = accumulator.recv()
        if received[VALID] != 1:
            return self.quiet(out)
        acc, acc_clipped = clip(self.receive_synapses(self.site, received), self.proc_params["accumulator_bits"])
        codes, clipped = requant(acc, self.proc_params["requant"])
        sent = self.send_out(self.key, codes, received[RESET])
        out.send(message(sent, received[RESET]))
        self.report(
            {S.accumulator(self.site): (acc, acc_clipped), self.site: (codes, clipped)}, nonzero(sent), {self.site: sent},
        )


# -- the groups ----------------------------------------------------------------------------------
@implements(proc=NormAttn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNormAttnModel(_GroupModel):
    group = S.NORM_ATTN
    x_in: PyInPort = IN
    s_i: PyOutPort = OUT
    s_f: PyOutPort = OUT
    s_g: PyOutPort = OUT
    readback: PyOutPort = OUT
    gain_attn: np.ndarray = state(16)
    gain_i: np.ndarray = state(16)
    gain_f: np.ndarray = state(16)
    gain_g: np.ndarray = state(16)
    delta_i: np.ndarray = state(24)
    delta_f: np.ndarray = state(24)
    delta_g: np.ndarray = state(24)
    sigma_x_in: np.ndarray = state(24)

    def run_spk(self) -> None:
        x = self.x_in.recv()
        if x[VALID] != 1:
            return self.quiet(self.s_i, self.s_f, self.s_g)
        norms = self.proc_params["norms"]
        layer_input = self.receive(self.proc_params["input_messaging"], self.sigma_x_in, x)
        a, a_clipped = rms_norm(layer_input, self.gain_attn, norms["attn"])
        sites = {S.ATTN_NORM: (a, a_clipped)}
        sent = {}
        ports, gains = (self.s_i, self.s_f, self.s_g), (self.gain_i, self.gain_f, self.gain_g)
        for projection, port, gain in zip(IFG, ports, gains, strict=True):
            s, s_clipped = rms_norm(a, gain, norms[SHORT[projection]])
            sent[S.spikes(projection)] = self.send_spikes(projection, s, x[RESET])
            port.send(message(sent[S.spikes(projection)], x[RESET]))
            sites[S.spikes(projection)] = (s, s_clipped)
        self.report(sites, nonzero(*sent.values()), sent)


@implements(proc=ProjIFG, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyProjIFGModel(_GroupModel):
    group = S.PROJ_IFG
    acc_i: PyInPort = IN
    acc_f: PyInPort = IN
    acc_g: PyInPort = IN
    ifg_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    sigma_i: np.ndarray = state(24)
    sigma_f: np.ndarray = state(24)
    sigma_g: np.ndarray = state(24)
    delta_out: np.ndarray = state(24)

    def run_spk(self) -> None:
        received = [self.acc_i.recv(), self.acc_f.recv(), self.acc_g.recv()]
        if received[0][VALID] != 1:
            return self.quiet(self.ifg_out)
        bits, requants = self.proc_params["accumulator_bits"], self.proc_params["requant"]
        sites, codes = {}, []
        for projection, acc_msg in zip(IFG, received, strict=True):
            acc, acc_clipped = clip(self.receive_synapses(projection, acc_msg), bits)
            code, code_clipped = requant(acc, requants[SHORT[projection]])
            sites[S.accumulator(projection)] = (acc, acc_clipped)
            sites[projection] = (code, code_clipped)
            codes.append(code)
        sent = self.send_out(IFG_OUT, np.concatenate(codes), received[0][RESET])
        self.ifg_out.send(message(sent, received[0][RESET]))
        self.report(sites, nonzero(sent), dict(zip(IFG, np.split(sent, len(IFG)), strict=True)))


@implements(proc=MLGRU, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMLGRUModel(_GroupModel):
    group = S.MLGRU
    ifg_in: PyInPort = IN
    s_o: PyOutPort = OUT
    readback: PyOutPort = OUT
    h: np.ndarray = state(24)
    sigmoid_f: np.ndarray = state(24)
    silu_i: np.ndarray = state(24)
    silu_h: np.ndarray = state(24)
    lower_bound: np.ndarray = state(24)
    gain_g: np.ndarray = state(16)
    gain_o: np.ndarray = state(16)
    delta_o: np.ndarray = state(24)
    sigma_ifg_in: np.ndarray = state(24)

    def run_spk(self) -> None:
        received = self.ifg_in.recv()
        if received[VALID] != 1:
            return self.quiet(self.s_o)
        p = self.proc_params
        bits, frac = p["internal_bits"], p["gate_frac_bits"]
        one = 1 << frac
        if received[RESET] == 1:
            self.h[:] = 0
        i, f, g = np.split(self.receive(p["messaging"][IFG_OUT], self.sigma_ifg_in, received), 3)
        # forget gate: sigmoid table, then lifted into [lower bound, 1) (layers above the first)
        f_q = lookup(self.sigmoid_f, f, bits)
        if p["has_lower_bound"]:
            lower = self.lower_bound.astype(np.int64)
            f_q = lower + shift_round((one - lower) * f_q, frac)
        # input gate: SiLU(i) * (1 - f)
        i_q = shift_round(lookup(self.silu_i, i, bits) * (one - f_q), frac)
        # state: h <- f * h + i, in a state_bits register
        drive, drive_clipped = requant(i_q, p["input_to_state"])
        h, h_clipped = clip(shift_round(f_q * self.h.astype(np.int64), frac) + drive, p["state_bits"])
        self.h[:] = h
        # output gate: g_norm(g) * SiLU(h), then the o BitLinear's input norm
        g_normed, g_clipped = rms_norm(g, self.gain_g, p["g_rms"])
        h_code, h_code_clipped = requant(h, p["state_to_code"])
        gated, gated_clipped = requant(g_normed * lookup(self.silu_h, h_code, bits), p["gated_out"])
        spikes, spikes_clipped = rms_norm(gated, self.gain_o, p["o_norm"])
        sent = self.send_spikes(S.O_PROJ, spikes, received[RESET])
        self.s_o.send(message(sent, received[RESET]))
        self.report(
            {
                S.FORGET_GATE: (f_q, None),
                S.INPUT_GATE: (i_q, None),
                S.HIDDEN: (h, h_clipped | drive_clipped),
                S.G_NORM: (g_normed, g_clipped),
                S.HIDDEN_CODE: (h_code, h_code_clipped),
                S.GATED_OUTPUT: (gated, gated_clipped),
                S.spikes(S.O_PROJ): (spikes, spikes_clipped),
            },
            nonzero(sent),
            {S.spikes(S.O_PROJ): sent},
        )


@implements(proc=ProjO, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyProjOModel(_ProjectionModel):
    group, site, key = S.PROJ_O, S.O_PROJ, O_OUT
    acc_o: PyInPort = IN
    o_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    sigma_o: np.ndarray = state(24)
    delta_out: np.ndarray = state(24)

    def run_spk(self) -> None:
        self.project(self.acc_o, self.o_out)


@implements(proc=NormMlp, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyNormMlpModel(_GroupModel):
    group = S.NORM_MLP
    x_in: PyInPort = IN
    o_in: PyInPort = IN
    s_gate: PyOutPort = OUT
    r_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    x: np.ndarray = state(24)
    gain_mlp: np.ndarray = state(16)
    gain_gate: np.ndarray = state(16)
    delta_gate: np.ndarray = state(24)
    sigma_x_in: np.ndarray = state(24)
    sigma_o_in: np.ndarray = state(24)

    def run_spk(self) -> None:
        x, o = self.x_in.recv(), self.o_in.recv()
        p = self.proc_params
        if x[VALID] == 1:  # the layer input arrives first; kept until o_proj answers
            self.x[:] = self.receive(p["input_messaging"], self.sigma_x_in, x)
        if o[VALID] != 1:
            return self.quiet(self.s_gate, self.r_out)
        o_codes = self.receive(p["messaging"][O_OUT], self.sigma_o_in, o)
        r, r_clipped = residual_add(self.x.astype(np.int64), o_codes, p["add"])
        m, m_clipped = rms_norm(r, self.gain_mlp, p["mlp_rms"])
        spikes, spikes_clipped = rms_norm(m, self.gain_gate, p["gate_norm"])
        sent = self.send_spikes(S.GATE_PROJ, spikes, o[RESET])
        self.s_gate.send(message(sent, o[RESET]))
        self.r_out.send(message(r, o[RESET]))
        self.report(
            {S.RESIDUAL_ATTN: (r, r_clipped), S.MLP_NORM: (m, m_clipped), S.spikes(S.GATE_PROJ): (spikes, spikes_clipped)},
            nonzero(sent),
            {S.spikes(S.GATE_PROJ): sent},
        )


@implements(proc=ProjGate, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyProjGateModel(_GroupModel):
    group = S.PROJ_GATE
    acc_gate: PyInPort = IN
    gy_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    sigma_gate: np.ndarray = state(24)
    delta_out: np.ndarray = state(24)

    def run_spk(self) -> None:
        received = self.acc_gate.recv()
        if received[VALID] != 1:
            return self.quiet(self.gy_out)
        p = self.proc_params
        acc, acc_clipped = clip(self.receive_synapses(S.GATE_PROJ, received), p["accumulator_bits"])
        gate_acc, y_acc = np.split(acc, 2)
        gate, gate_clipped = requant(gate_acc, p["requant"][S.GATE_HALF])
        y, y_clipped = requant(y_acc, p["requant"][S.Y])
        sent = self.send_out(GATE_OUT, np.concatenate([gate, y]), received[RESET])
        self.gy_out.send(message(sent, received[RESET]))
        sent_gate, sent_y = np.split(sent, 2)
        self.report(
            {S.accumulator(S.GATE_PROJ): (acc, acc_clipped), S.GATE_HALF: (gate, gate_clipped), S.Y: (y, y_clipped)},
            nonzero(sent),
            {S.GATE_HALF: sent_gate, S.Y: sent_y},
        )


@implements(proc=GLU, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGLUModel(_GroupModel):
    group = S.GLU_GROUP
    gy_in: PyInPort = IN
    s_down: PyOutPort = OUT
    readback: PyOutPort = OUT
    silu_gate: np.ndarray = state(24)
    gain_down: np.ndarray = state(16)
    delta_down: np.ndarray = state(24)
    sigma_gy_in: np.ndarray = state(24)

    def run_spk(self) -> None:
        received = self.gy_in.recv()
        if received[VALID] != 1:
            return self.quiet(self.s_down)
        p = self.proc_params
        gate, y = np.split(self.receive(p["messaging"][GATE_OUT], self.sigma_gy_in, received), 2)
        glu, glu_clipped = requant(lookup(self.silu_gate, gate, p["internal_bits"]) * y, p["glu_out"])
        spikes, spikes_clipped = rms_norm(glu, self.gain_down, p["down_norm"])
        sent = self.send_spikes(S.DOWN_PROJ, spikes, received[RESET])
        self.s_down.send(message(sent, received[RESET]))
        self.report(
            {S.GLU: (glu, glu_clipped), S.spikes(S.DOWN_PROJ): (spikes, spikes_clipped)}, nonzero(sent),
            {S.spikes(S.DOWN_PROJ): sent},
        )


@implements(proc=ProjDown, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyProjDownModel(_ProjectionModel):
    group, site, key = S.PROJ_DOWN, S.DOWN_PROJ, DOWN_OUT
    acc_down: PyInPort = IN
    d_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    sigma_down: np.ndarray = state(24)
    delta_out: np.ndarray = state(24)

    def run_spk(self) -> None:
        self.project(self.acc_down, self.d_out)


@implements(proc=Residual, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyResidualModel(_GroupModel):
    group = S.RESIDUAL
    r_in: PyInPort = IN
    d_in: PyInPort = IN
    x_out: PyOutPort = OUT
    readback: PyOutPort = OUT
    r: np.ndarray = state(24)
    sigma_d_in: np.ndarray = state(24)
    delta_out: np.ndarray = state(24)

    def run_spk(self) -> None:
        r, d = self.r_in.recv(), self.d_in.recv()
        if r[VALID] == 1:  # arrives two steps before down_proj answers
            self.r[:] = r[:-CONTROL]
        if d[VALID] != 1:
            return self.quiet(self.x_out)
        p = self.proc_params
        down = self.receive(p["messaging"][DOWN_OUT], self.sigma_d_in, d)
        x, x_clipped = residual_add(self.r.astype(np.int64), down, p["add"])
        sent = self.send_out(RESIDUAL_OUT, x, d[RESET])
        self.x_out.send(message(sent, d[RESET]))
        self.report({S.RESIDUAL_MLP: (x, x_clipped)}, nonzero(sent), {S.RESIDUAL_MLP: sent})


@implements(proc=FinalNorm, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFinalNormModel(PyLoihiProcessModel):
    x_in: PyInPort = IN
    readback: PyOutPort = OUT
    gain: np.ndarray = state(16)
    sigma_x_in: np.ndarray = state(24)

    def run_spk(self) -> None:
        x = self.x_in.recv()
        if x[VALID] != 1:
            self.readback.send(np.zeros(self.readback.shape, np.int32))
            return
        final_input = accumulate(self.proc_params["input_messaging"], self.sigma_x_in, data(x), x[RESET])
        out, clipped = rms_norm(final_input, self.gain, self.proc_params["norm"])
        self.readback.send(np.concatenate([out, clipped, [1, 1]]).astype(np.int32))
