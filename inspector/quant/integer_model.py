"""The integer MatMul-free LM: what the emulated Loihi 2 neuro-cores compute, token by token.

Data flow of one layer (codes are integers; `->` is an integer requantization):

    x --RMSNorm--> a --(i,f,g) BitLinear--> i, f, g codes
    f --sigmoid LUT, lower bound--> f_q (fixed point)      i --SiLU LUT, * (1 - f_q)--> i_q
    h <- sat(f_q * h >> Q + i_q -> state)                  (24-bit neuron state, per token)
    o = o_proj(RMSNorm(g) * SiLU LUT(h -> code))           x <- x + o   (residual add)
    m = RMSNorm(x);  gate, y = gate_proj(m);  x <- x + down_proj(SiLU LUT(gate) * y)

The embedding lookup and the LM head run on the host in floating point (as in the paper); the chip
receives the embedding as `residual_bits` codes and returns the final-norm codes.

A `probe` (see `inspector.emulator.probes`) may observe every site (names in `inspector.sites`);
with `probe=None` nothing is recorded and the run is as fast as the arithmetic allows. The float
twin of every method below is the method of the same name in `inspector.model`.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from inspector import sites as S
from inspector.model import HGRNBitForCausalLM
from inspector.quant import kernels as K
from inspector.quant.convert import IntBitLinear, IntegerParams, IntLayer


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


class Sites:
    """Where one layer reports its sites: the probe (or none), the key prefix and the layer's scales.

    Without a probe nothing is recorded and no clipping mask is even computed: a run nobody
    watches costs only its arithmetic.
    """

    def __init__(self, probe: Optional[Probe], prefix: str, scales: dict[str, float]):
        self.probe, self.prefix, self.scales = probe, prefix, scales
        self.watched = probe is not None
        self.feeds = self.watched and hasattr(probe, "replace")

    def __call__(self, name: str, op, *inputs: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
        """Apply a saturating operation (a Requant, ResidualAdd or IntNorm) and report its codes."""
        codes, clipped = op(*inputs, clipped=self.watched)
        return self.record(name, codes, clipped, S.ACTIVATION, scale)

    def record(
        self,
        name: str,
        codes: torch.Tensor,
        clipped: Optional[torch.Tensor] = None,
        kind: str = S.ACTIVATION,
        scale: Optional[float] = None,
    ) -> torch.Tensor:
        """Report codes computed elsewhere; a feeding probe may hand back other codes."""
        if not self.watched:
            return codes
        scale = self.scales[name] if scale is None else scale
        self.probe.site(self.prefix + name, codes, scale, clipped, kind)
        return self.probe.replace(self.prefix + name, codes, scale) if self.feeds else codes


class IntegerLM:
    """Callable like the float model: (input_ids, state) -> (logits, state); states are int64.

    The methods mirror `inspector.model`: `bitlinear` is BitLinear.forward, `mlgru` MLGRU.forward,
    `glu` GLU.forward, `block` Block.forward, `__call__` HGRNBitForCausalLM.forward. Shapes: B batch,
    T tokens, D hidden, M mixer width, I GLU width; every tensor is int64 codes.
    """

    def __init__(self, params: IntegerParams, float_model: HGRNBitForCausalLM):
        self.params = params
        self.qc = params.qc
        self.embeddings = float_model.model.embeddings  # host side
        self.lm_head = float_model.lm_head  # host side
        self.config = float_model.config

    def init_state(self, batch: int = 1) -> list[torch.Tensor]:
        return [torch.zeros(batch, self.config.mixer_size, dtype=K.INT) for _ in self.params.layers]

    # -- the model, piece by piece, as inspector.model ------------------------------------------
    def bitlinear(self, proj: IntBitLinear, codes: torch.Tensor, site: Sites, name: str) -> torch.Tensor:
        """A BitLinear core: integer RMSNorm into 8-bit spikes, ternary synapses, saturating accumulator."""
        spikes = site(name + S.SPIKES, proj.norm, codes, scale=proj.norm.out_scale)  # (B, T, in) spike_bits
        if site.watched:
            site.probe.synapses(site.prefix + name, spikes, proj)
        acc = proj.accumulate(spikes)  # (B, T, out) exact: sum_j W[o, j] * spikes[j]
        acc, clipped = K.saturate(acc, self.qc.accumulator_bits, site.watched)
        return site.record(name + S.ACCUMULATOR_SUFFIX, acc, clipped, S.ACCUMULATOR, proj.acc_scale)

    def mlgru(self, L: IntLayer, a: torch.Tensor, h: torch.Tensor, site: Sites) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLGRU token mixer; returns (o_proj output (B, T, D), last state (B, M))."""
        qc, one = self.qc, 1 << self.qc.gate_frac_bits
        i = site(S.I_PROJ, L.i_out, self.bitlinear(L.i_proj, a, site, S.I_PROJ))  # (B, T, M) internal_bits
        f = site(S.F_PROJ, L.f_out, self.bitlinear(L.f_proj, a, site, S.F_PROJ))  # (B, T, M) internal_bits
        g = site(S.G_PROJ, L.g_out, self.bitlinear(L.g_proj, a, site, S.G_PROJ))  # (B, T, M) internal_bits
        f_q = K.lut_lookup(f, L.sigmoid_f, qc.internal_bits)  # (B, T, M) sigmoid, gate_frac_bits fixed point
        if L.lower_bound_q is not None:
            f_q = L.lower_bound_q + K.round_shift((one - L.lower_bound_q) * f_q, qc.gate_frac_bits)
        f_q = site.record(S.FORGET_GATE, f_q, kind=S.GATE)
        i_q = K.round_shift(K.lut_lookup(i, L.silu_i, qc.internal_bits) * (one - f_q), qc.gate_frac_bits)  # (B, T, M) lut_bits
        i_q = site.record(S.INPUT_GATE, i_q)
        hs, h = self.recurrence(L, f_q, i_q, h, site)  # (B, T, M) state_bits, (B, M)
        gn = site(S.G_NORM, L.g_norm, g)  # (B, T, M) internal_bits
        h_code = site(S.HIDDEN_CODE, L.state_to_code, hs)  # (B, T, M) the state read out as internal_bits
        swish_h = K.lut_lookup(h_code, L.silu_h, qc.internal_bits)  # (B, T, M) SiLU(h), lut_bits
        gated = site(S.GATED_OUTPUT, L.gated_out, gn * swish_h)  # (B, T, M) internal_bits
        o = site(S.O_PROJ, L.o_out, self.bitlinear(L.o_proj, gated, site, S.O_PROJ))  # (B, T, D) act_bits
        return o, h

    def recurrence(
        self, L: IntLayer, f_q: torch.Tensor, i_q: torch.Tensor, h: torch.Tensor, site: Sites
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t = sat(f_t * h_{t-1} >> Q + drive_t) in a state_bits register: (all states, last state)."""
        qc, watched = self.qc, site.watched
        drive, drive_clipped = L.input_to_state(i_q, clipped=watched)  # (B, T, M) state_bits
        if watched and hasattr(site.probe, "previous_states"):
            # Fed states: every step starts from a given h_{t-1}, so the steps are independent.
            before = site.probe.previous_states(site.prefix + S.HIDDEN, h, f_q.shape[1])
            hs, clipped = K.saturate(K.round_shift(f_q * before, qc.gate_frac_bits) + drive, qc.state_bits)
            return site.record(S.HIDDEN, hs, clipped | drive_clipped, S.STATE), hs[:, -1]
        states, masks = [], []
        for t in range(f_q.shape[1]):
            h, c = K.saturate(K.round_shift(f_q[:, t] * h, qc.gate_frac_bits) + drive[:, t], qc.state_bits, watched)
            states.append(h)
            if watched:
                masks.append(c | drive_clipped[:, t])
        hs = torch.stack(states, dim=1) if len(states) > 1 else states[0][:, None]
        clipped = torch.stack(masks, dim=1) if watched else None
        return site.record(S.HIDDEN, hs, clipped, S.STATE), h

    def glu(self, L: IntLayer, m: torch.Tensor, site: Sites) -> torch.Tensor:
        """The GLU channel mixer: down_proj(SiLU(gate) * y), gate and y the halves of gate_proj."""
        acc = self.bitlinear(L.gate_proj, m, site, S.GATE_PROJ)  # (B, T, 2I)
        inner = acc.shape[-1] // 2
        gate = site(S.GATE_HALF, L.gate_out, acc[..., :inner])  # (B, T, I) internal_bits
        y = site(S.Y, L.y_out, acc[..., inner:])  # (B, T, I) internal_bits
        silu_gate = K.lut_lookup(gate, L.silu_gate, self.qc.internal_bits)  # (B, T, I) lut_bits
        product = site(S.GLU, L.glu_out, silu_gate * y)  # (B, T, I) internal_bits
        return site(S.DOWN_PROJ, L.down_out, self.bitlinear(L.down_proj, product, site, S.DOWN_PROJ))  # (B, T, D) act_bits

    def block(
        self, idx: int, x: torch.Tensor, h: torch.Tensor, probe: Optional[Probe] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: x += mlgru(attn_norm(x)); x += glu(mlp_norm(x)). Returns (output (B, T, D), last state)."""
        L = self.params.layers[idx]
        site = Sites(probe, S.layer_key(idx, ""), L.scales)
        a = site(S.ATTN_NORM, L.attn_norm, x)  # (B, T, D) act_bits
        o, h = self.mlgru(L, a, h, site)  # (B, T, D), (B, M)
        r = site(S.RESIDUAL_ATTN, L.residual_attn, x, o)  # (B, T, D) residual_bits
        m = site(S.MLP_NORM, L.mlp_norm, r)  # (B, T, D) act_bits
        d = self.glu(L, m, site)  # (B, T, D) act_bits
        return site(S.RESIDUAL_MLP, L.residual_mlp, r, d), h  # (B, T, D) residual_bits

    # -- host side -------------------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Host: embedding lookup, quantized to the chip's input codes (round half up)."""
        real = self.embeddings(input_ids).detach().double()
        return K.saturate(torch.floor(real / self.params.input_scale + 0.5).to(K.INT), self.qc.residual_bits, clipped)

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
        scales = {S.EMBEDDINGS: self.params.input_scale, S.FINAL_NORM: self.params.final_norm.out_scale, S.LOGITS: 1.0}
        outer = Sites(probe, "", scales)
        x = outer(S.EMBEDDINGS, self.embed, input_ids)  # (B, T, D) residual_bits
        if state is None:
            state = self.init_state(input_ids.shape[0])
        new_state = []
        for idx in range(len(self.params.layers)):
            x, h = self.block(idx, x, state[idx], probe)
            new_state.append(h)
        final = outer(S.FINAL_NORM, self.params.final_norm, x)  # (B, T, D) act_bits
        logits = self.host_logits(final)  # (B, T, vocab) float, on the host
        if probe is not None:
            probe.site(S.LOGITS, logits, 1.0, None, S.HOST)
        return logits, new_state
