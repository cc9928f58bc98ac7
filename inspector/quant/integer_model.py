"""The integer MatMul-free LM: what the emulated Loihi 2 neuro-cores compute, token by token.

Data flow of one layer (codes are integers; `->` is an integer requantization):

    x --RMSNorm--> a --(i,f,g) BitLinear--> i, f, g codes
    f --sigmoid LUT, lower bound--> f_q (fixed point)      i --SiLU LUT, * (1 - f_q)--> i_q
    h <- sat(f_q * h >> Q + i_q -> state)                  (24-bit neuron state, per token)
    o = o_proj(RMSNorm(g) * SiLU LUT(h -> code))           x <- x + o   (residual add)
    m = RMSNorm(x);  gate, y = gate_proj(m);  x <- x + down_proj(SiLU LUT(gate) * y)

The embedding lookup and the LM head run on the host in floating point (as in the paper); the chip
receives the embedding as `residual_bits` codes and returns the final-norm codes.

A `probe` (see `inspector.emulator.probes`) may observe every site; with `probe=None` nothing is
recorded and the run is as fast as the arithmetic allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator, Optional, Protocol

import torch

from inspector.model import HGRNBitForCausalLM
from inspector.quant import kernels as K
from inspector.quant.convert import IntBitLinear, IntegerParams


@dataclass
class SynapseRequest:
    """A layer program asking for sum_j W[o, j] * spikes[j] through one projection's synapses."""

    key: str
    proj: IntBitLinear
    spikes: torch.Tensor


LayerProgram = Generator[SynapseRequest, torch.Tensor, tuple]


class Probe(Protocol):
    def site(self, key: str, codes: torch.Tensor, scale: float, clipped: Optional[torch.Tensor], kind: str) -> None: ...

    def synapses(self, key: str, spikes: torch.Tensor, proj: IntBitLinear) -> None: ...


class FeedingProbe(Probe, Protocol):
    """A probe that also *feeds* the model (`inspector.local_error`): after observing a site it may
    hand the next operation other codes than the ones computed (the float model's values, quantized),
    and it supplies the previous MLGRU states, so that each site is computed from given inputs.
    Ordinary probes lack these methods and the model then runs on its own integers."""

    def replace(self, key: str, codes: torch.Tensor, scale: float) -> torch.Tensor: ...

    def previous_states(self, key: str, initial: torch.Tensor, steps: int) -> torch.Tensor: ...


PROJECTION_NAMES = ("i_proj", "f_proj", "g_proj", "o_proj", "gate_proj", "down_proj")


class IntegerLM:
    """Callable like the float model: (input_ids, state) -> (logits, state); states are int64."""

    def __init__(self, params: IntegerParams, float_model: HGRNBitForCausalLM):
        self.params = params
        self.qc = params.qc
        self.embeddings = float_model.model.embeddings  # host side
        self.lm_head = float_model.lm_head  # host side
        self.config = float_model.config

    def init_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, self.config.mixer_size, dtype=K.INT) for _ in self.params.layers]

    # -- building blocks -------------------------------------------------------------------
    def _bitlinear(self, proj: IntBitLinear, codes: torch.Tensor, probe: Optional[Probe], key: str) -> LayerProgram:
        """Normalize into spikes, ask the synapses for the accumulation (a `yield`), saturate it."""
        spikes, clipped = proj.norm(codes)
        if probe is not None:
            probe.site(key + ".spikes", spikes, proj.norm.out_scale, clipped, "activation")
            probe.synapses(key, spikes, proj)
        acc = yield SynapseRequest(key, proj, spikes)
        acc, acc_clipped = K.saturate(acc, self.qc.accumulator_bits)
        if probe is not None:
            probe.site(key + ".accumulator", acc, proj.acc_scale, acc_clipped, "accumulator")
        return acc

    @staticmethod
    def _site(probe: Optional[Probe], key: str, pair: tuple[torch.Tensor, torch.Tensor], scale: float, kind: str = "activation") -> torch.Tensor:
        codes, clipped = pair
        if probe is not None:
            probe.site(key, codes, scale, clipped, kind)
            if hasattr(probe, "replace"):
                codes = probe.replace(key, codes, scale)
        return codes

    def layer_program(
        self, idx: int, x: torch.Tensor, h: torch.Tensor, probe: Optional[Probe]
    ) -> LayerProgram:
        """One layer's neuron computations; every ternary accumulation is requested with `yield`.

        Written as a generator so that the same code runs whether the synapses are emulated here
        (`_run_layer` answers with the exact int8 accumulation of `inspector.ternary`) or are Lava `Dense` processes (the Lava
        backend answers with what its synapses delivered). Returns (layer output, last state).
        """
        L = self.params.layers[idx]
        qc, s, p = self.qc, L.scales, f"layers.{idx}."
        one = 1 << qc.gate_frac_bits
        a = self._site(probe, p + "attn_norm", L.attn_norm(x), s["attn_norm"])
        i = self._site(probe, p + "i_proj", L.i_out((yield from self._bitlinear(L.i_proj, a, probe, p + "i_proj"))), s["i_proj"])
        f = self._site(probe, p + "f_proj", L.f_out((yield from self._bitlinear(L.f_proj, a, probe, p + "f_proj"))), s["f_proj"])
        g = self._site(probe, p + "g_proj", L.g_out((yield from self._bitlinear(L.g_proj, a, probe, p + "g_proj"))), s["g_proj"])

        f_q = K.lut_lookup(f, L.sigmoid_f, qc.internal_bits)
        if L.lower_bound_q is not None:
            f_q = L.lower_bound_q + K.round_shift((one - L.lower_bound_q) * f_q, qc.gate_frac_bits)
        f_q = self._site(probe, p + "forget_gate", (f_q, None), s["forget_gate"], "gate")
        i_q = K.round_shift(K.lut_lookup(i, L.silu_i, qc.internal_bits) * (one - f_q), qc.gate_frac_bits)
        i_q = self._site(probe, p + "input_gate", (i_q, None), s["input_gate"])
        drive, drive_clipped = L.input_to_state(i_q)
        if probe is not None and hasattr(probe, "previous_states"):
            # Fed states: every step starts from a given h_{t-1}, so the steps are independent.
            before = probe.previous_states(p + "hidden", h, x.shape[1])
            hs, clipped_h = K.saturate(K.round_shift(f_q * before, qc.gate_frac_bits) + drive, qc.state_bits)
            hs_clipped = clipped_h | drive_clipped
            h = hs[:, -1]
        else:
            states, clipped = [], []
            for t in range(x.shape[1]):
                h, c = K.saturate(K.round_shift(f_q[:, t] * h, qc.gate_frac_bits) + drive[:, t], qc.state_bits)
                states.append(h)
                clipped.append(c | drive_clipped[:, t])
            hs, hs_clipped = torch.stack(states, dim=1), torch.stack(clipped, dim=1)
        hs = self._site(probe, p + "hidden", (hs, hs_clipped), s["hidden"], "state")

        gn = self._site(probe, p + "g_norm", L.g_norm(g), s["g_norm"])
        h_code, _ = L.state_to_code(hs)
        swish_h = K.lut_lookup(h_code, L.silu_h, qc.internal_bits)
        gated = self._site(probe, p + "gated_output", L.gated_out(gn * swish_h), s["gated_output"])
        o = self._site(probe, p + "o_proj", L.o_out((yield from self._bitlinear(L.o_proj, gated, probe, p + "o_proj"))), s["o_proj"])
        r = self._site(probe, p + "residual_attn", L.residual_attn(x, o), s["residual_attn"])

        m = self._site(probe, p + "mlp_norm", L.mlp_norm(r), s["mlp_norm"])
        acc = yield from self._bitlinear(L.gate_proj, m, probe, p + "gate_proj")
        inner = acc.shape[-1] // 2
        gate = self._site(probe, p + "gate", L.gate_out(acc[..., :inner]), s["gate"])
        y = self._site(probe, p + "y", L.y_out(acc[..., inner:]), s["y"])
        glu = self._site(probe, p + "glu", L.glu_out(K.lut_lookup(gate, L.silu_gate, qc.internal_bits) * y), s["glu"])
        d = self._site(probe, p + "down_proj", L.down_out((yield from self._bitlinear(L.down_proj, glu, probe, p + "down_proj"))), s["down_proj"])
        out = self._site(probe, p + "residual_mlp", L.residual_mlp(r, d), s["residual_mlp"])
        return out, h

    def _run_layer(self, idx: int, x: torch.Tensor, h: torch.Tensor, probe: Optional[Probe]) -> tuple[torch.Tensor, torch.Tensor]:
        """Drive a layer program, answering each synapse request with the emulated accumulation."""
        program = self.layer_program(idx, x, h, probe)
        try:
            request = next(program)
            while True:
                proj = request.proj
                request = program.send(proj.accumulate(request.spikes))
        except StopIteration as done:
            return done.value

    # -- the model -----------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Host: embedding lookup, quantized to the chip's input codes (round half up)."""
        real = self.embeddings(input_ids).detach().double()
        return K.saturate(torch.floor(real / self.params.input_scale + 0.5).to(K.INT), self.qc.residual_bits)

    @torch.no_grad()
    def host_logits(self, final_codes: torch.Tensor) -> torch.Tensor:
        """The LM head on the host, in float, one position at a time.

        Why one at a time: a float matmul over T positions may round differently from T matmuls
        over one position, and the logits of a token must not depend on how many tokens were fed
        together (prefill vs. step, emulator vs. Lava, which feeds the graph token by token).
        """
        rows = (final_codes.float() * self.params.final_norm.out_scale).split(1, dim=1)
        return torch.cat([self.lm_head(row) for row in rows], dim=1)

    def __call__(
        self, input_ids: torch.Tensor, state: Optional[list[torch.Tensor]] = None, probe: Optional[Probe] = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self._site(probe, "embeddings", self.embed(input_ids), self.params.input_scale)
        if state is None:
            state = self.init_state(input_ids.shape[0])
        new_state = []
        for idx in range(len(self.params.layers)):
            x, h = self._run_layer(idx, x, state[idx], probe)
            new_state.append(h)
        final = self._site(probe, "final_norm", self.params.final_norm(x), self.params.final_norm.out_scale)
        logits = self.host_logits(final)
        if probe is not None:
            probe.site("logits", logits, 1.0, None, "host")
        return logits, new_state
