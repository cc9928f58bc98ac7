"""The integer MatMul-free LM: what the emulated Loihi 2 neuro-cores compute, token by token.

Data flow of one layer (codes are integers; `->` is an integer requantization):

    x --RMSNorm--> a --(i,f,g) BitLinear--> i, f, g codes
    f --sigmoid LUT, lower bound--> f_q (fixed point)      i --SiLU LUT, * (1 - f_q)--> i_q
    h <- sat(f_q * h >> Q + i_q -> state)                  (24-bit neuron state, per token)
    o = o_proj(RMSNorm(g) * SiLU LUT(h -> code))           x <- x + o   (residual add)
    m = RMSNorm(x);  gate, y = gate_proj(m);  x <- x + down_proj(SiLU LUT(gate) * y)

Every group's outgoing codes travel as messages (the schema's message sites: each BitLinear's input
spikes, the projections' outputs, the residual stream): dense by default, or event-driven per group
(`inspector.quant.messaging`, `Senders`). Under sigma-delta a BitLinear's synapses accumulate W times
the sum of the received changes and an element-wise receiver reads their sum in place of the code;
the encoders' state joins the generation state.

The embedding lookup and the LM head run on the host in floating point (as in the paper); the chip
receives the embedding as `residual_bits` codes and returns the final-norm codes.

A `probe` (see `inspector.chip.probes`) may observe every site (names in `inspector.schema`);
with `probe=None` nothing is recorded and the run is as fast as the arithmetic allows.

The float twin of every step below is in `inspector.lm.model` (`bitlinear` is `BitLinear.forward`,
`mlgru` `MLGRU.forward`, `recurrence` `MLGRU.recurrence`, `glu` `GLU.forward`, `block`
`Block.forward`, `__call__` `HGRNBitForCausalLM.forward`): the same steps in the same order, the
same sites recorded at the same points. The two differ only where quantization enters: requantizing
site operations, lookup tables for sigmoid and SiLU, the BitLinear's spikes and accumulator, the
normed gate `g_norm` and the state's readout `hidden_code` as sites of their own, the messaging.
`tests/test_twins.py` checks the steps and their sites.
"""

from __future__ import annotations

import functools
import itertools
from typing import Optional, Protocol

import numpy as np
import torch

from inspector import schema as S
from inspector.lm.model import HGRNBitForCausalLM
from inspector.quant import kernels as K
from inspector.quant import messaging as msg
from inspector.quant.convert import IntBitLinear, IntegerParams, IntLayer


class Probe(Protocol):
    def site(self, key: str, codes: torch.Tensor, scale: float, clipped: Optional[torch.Tensor], kind: str) -> None: ...

    def synapses(self, key: str, spikes: torch.Tensor, proj: IntBitLinear) -> None:
        """`spikes`: what the projection's input neurons *sent* (the messages' payloads, 0 = no
        message): the codes when dense, the deltas under sigma-delta."""


class CountingProbe(Probe, Protocol):
    """A probe that counts messages (`inspector.chip.probes`): it is also told what the neurons of an
    element-wise message site sent (a projection's output, the residual stream). Probes without
    this method only see the codes."""

    def sent(self, key: str, sent: torch.Tensor) -> None:
        """`sent`: the payloads of the site's messages (0 = no message): the codes when dense."""


class FeedingProbe(Probe, Protocol):
    """A probe that also *feeds* the model (`inspector.compare.local_error`): after observing a site it may
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
        self.counts = self.watched and hasattr(probe, "sent")

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

    def send(self, name: str, codes: torch.Tensor, senders: Optional["Senders"]) -> torch.Tensor:
        """An element-wise message site's codes as its receivers get them (None senders: dense)."""
        received, sent = senders.send(name, codes) if senders is not None else (codes, codes)
        if self.counts:
            self.probe.sent(self.prefix + name, sent)
        return received


class Senders:
    """The messaging of one layer's graded spikes (`inspector.quant.messaging`): every message site of
    the schema, keyed by site (`i_proj.spikes` into a BitLinear, `i_proj` element-wise).

    Holds the delta encoders' state of the sites whose group is in `delta` mode, packed in the
    schema's group order as one (B, 2, sum of their widths) tensor in the generation state. Senders
    works on its own copy of that tensor (a state given to it is never changed: generation may step
    twice from one state), each site's encoder a numpy view of it updated in place, so a token costs
    one copy per layer and no packing; the state it returns is that copy.
    """

    def __init__(self, qc, layer: IntLayer, state: Optional[torch.Tensor]):
        dims = S.Dims(d=layer.i_proj.matrix.shape[1], m=layer.i_proj.matrix.shape[0], ffn=layer.down_proj.matrix.shape[1])
        self.settings, self.spans, self.neurons = _sender_layout(qc, dims)
        self.stateful = bool(self.spans)
        # a numpy copy: a plain memcpy, where torch's clone may hand a few hundred kB to its thread pool
        self.packed: Optional[np.ndarray] = state.numpy().copy() if state is not None and self.stateful else None

    def send(self, site: str, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the receivers accumulate, what was sent) for a message site's codes (B, T, N)."""
        m = self.settings[site]
        if not m.stateful:
            received, sent, _ = msg.transmit(codes, m)
            return received, sent
        if self.packed is None:
            self.packed = msg.zero_state(codes.shape[0], self.neurons).numpy()
        start, stop = self.spans[site]
        return msg.transmit_in_place(codes, m, self.packed[:, :, start:stop])

    def state(self, batch: int) -> Optional[torch.Tensor]:
        if not self.stateful:
            return None
        return torch.from_numpy(self.packed) if self.packed is not None else msg.zero_state(batch, self.neurons)


@functools.lru_cache(maxsize=64)
def _sender_layout(qc, dims: S.Dims) -> tuple[dict, dict[str, tuple[int, int]], int]:
    """Per QuantConfig and model size: each message site's Messaging, the delta sites' spans in the
    packed state (in packing order) and its width (built once, not per layer and token)."""
    settings = {site: msg.for_site(qc, site) for site in msg.GROUP_OF_SITE}
    stateful = [site for site, m in settings.items() if m.stateful]
    widths = [S.size_of(S.SITE_OF[site].size, dims) for site in stateful]
    stops = list(itertools.accumulate(widths))
    spans = {site: (stop - width, stop) for site, width, stop in zip(stateful, widths, stops, strict=True)}
    return settings, spans, sum(widths)


class IntegerLM:
    """Callable like the float model: (input_ids, state) -> (logits, state); states are int64.

    The methods mirror `inspector.lm.model` (see the module docstring). Shapes: B batch, T tokens,
    D hidden, M mixer width, I GLU width; every tensor is int64 codes.
    """

    def __init__(self, params: IntegerParams, float_model: HGRNBitForCausalLM):
        self.params = params
        self.qc = params.qc
        self.embeddings = float_model.model.embeddings  # host side
        self.lm_head = float_model.lm_head  # host side
        self.config = float_model.config

    def init_state(self, batch: int = 1) -> list[torch.Tensor]:
        """One MLGRU state (B, M) per layer; with a `delta` messaging group, then one delta-encoder
        state (B, 2, N) per layer (see `Senders`)."""
        hs = [torch.zeros(batch, self.config.mixer_size, dtype=K.INT) for _ in self.params.layers]
        if not msg.any_stateful(self.qc):
            return hs
        return hs + [Senders(self.qc, layer, None).state(batch) for layer in self.params.layers]

    # -- the model, piece by piece, as inspector.lm.model ------------------------------------------
    def bitlinear(
        self, proj: IntBitLinear, codes: torch.Tensor, site: Sites, name: str, senders: Optional[Senders] = None
    ) -> torch.Tensor:
        """A BitLinear core: integer RMSNorm into 8-bit spikes, messages (dense or event-driven),
        ternary synapses, saturating accumulator."""
        spikes = site(name + S.SPIKES, proj.norm, codes, scale=proj.norm.out_scale)  # (B, T, in) spike_bits
        received, sent = senders.send(name + S.SPIKES, spikes) if senders is not None else (spikes, spikes)
        if site.watched:
            site.probe.synapses(site.prefix + name, sent, proj)
        # (B, T, out) exact: sum_j W[o, j] * received[j]; under delta, W times the sum of the received deltas
        acc = proj.accumulate(received)
        acc, clipped = K.saturate(acc, self.qc.accumulator_bits, site.watched)
        return site.record(name + S.ACCUMULATOR_SUFFIX, acc, clipped, S.ACCUMULATOR, proj.acc_scale)  # (B, T, out)

    def mlgru(
        self, L: IntLayer, a: torch.Tensor, h: torch.Tensor, site: Sites, senders: Optional[Senders] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLGRU token mixer; returns (o_proj output (B, T, D), last state (B, M))."""
        qc, one = self.qc, 1 << self.qc.gate_frac_bits
        i = site(S.I_PROJ, L.i_out, self.bitlinear(L.i_proj, a, site, S.I_PROJ, senders))  # (B, T, M) internal_bits
        f = site(S.F_PROJ, L.f_out, self.bitlinear(L.f_proj, a, site, S.F_PROJ, senders))  # (B, T, M) internal_bits
        g = site(S.G_PROJ, L.g_out, self.bitlinear(L.g_proj, a, site, S.G_PROJ, senders))  # (B, T, M) internal_bits
        # proj_ifg's messages into the MLGRU: the neurons there read what they received
        i, f, g = (site.send(name, codes, senders) for name, codes in ((S.I_PROJ, i), (S.F_PROJ, f), (S.G_PROJ, g)))
        f_q = K.lut_lookup(f, L.sigmoid_f, qc.internal_bits)  # (B, T, M) sigmoid, gate_frac_bits fixed point
        if L.lower_bound_q is not None:
            f_q = L.lower_bound_q + K.round_shift((one - L.lower_bound_q) * f_q, qc.gate_frac_bits)
        f_q = site.record(S.FORGET_GATE, f_q, kind=S.GATE)  # (B, T, M)
        i_q = K.round_shift(K.lut_lookup(i, L.silu_i, qc.internal_bits) * (one - f_q), qc.gate_frac_bits)  # (B, T, M) lut_bits
        i_q = site.record(S.INPUT_GATE, i_q)  # (B, T, M)
        hs, h = self.recurrence(L, f_q, i_q, h, site)  # (B, T, M) state_bits, (B, M)
        gn = site(S.G_NORM, L.g_norm, g)  # (B, T, M) internal_bits
        h_code = site(S.HIDDEN_CODE, L.state_to_code, hs)  # (B, T, M) the state read out as internal_bits
        swish_h = K.lut_lookup(h_code, L.silu_h, qc.internal_bits)  # (B, T, M) SiLU(h), lut_bits
        gated = site(S.GATED_OUTPUT, L.gated_out, gn * swish_h)  # (B, T, M) internal_bits
        o = site(S.O_PROJ, L.o_out, self.bitlinear(L.o_proj, gated, site, S.O_PROJ, senders))  # (B, T, D) act_bits
        return site.send(S.O_PROJ, o, senders), h  # proj_o's messages into the residual add

    def recurrence(
        self, L: IntLayer, f_q: torch.Tensor, i_q: torch.Tensor, h: torch.Tensor, site: Sites
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t = sat(f_t * h_{t-1} >> Q + drive_t) in a state_bits register: (all states, last state)."""
        qc, watched = self.qc, site.watched
        drive, drive_clipped = L.input_to_state(i_q, clipped=watched)  # (B, T, M) state_bits
        if site.feeds:
            # Fed states: every step starts from a given h_{t-1}, so the steps are independent.
            before = site.probe.previous_states(site.prefix + S.HIDDEN, h, f_q.shape[1])  # (B, T, M)
            hs, clipped = K.saturate(K.round_shift(f_q * before, qc.gate_frac_bits) + drive, qc.state_bits)
            return site.record(S.HIDDEN, hs, clipped | drive_clipped, S.STATE), hs[:, -1]  # (B, T, M), (B, M)
        states, masks = [], []
        for t in range(f_q.shape[1]):
            h, c = K.saturate(K.round_shift(f_q[:, t] * h, qc.gate_frac_bits) + drive[:, t], qc.state_bits, watched)  # (B, M)
            states.append(h)
            if watched:
                masks.append(c | drive_clipped[:, t])
        hs = torch.stack(states, dim=1) if len(states) > 1 else states[0][:, None]
        clipped = torch.stack(masks, dim=1) if watched else None
        return site.record(S.HIDDEN, hs, clipped, S.STATE), h  # (B, T, M), (B, M)

    def glu(self, L: IntLayer, m: torch.Tensor, site: Sites, senders: Optional[Senders] = None) -> torch.Tensor:
        """The GLU channel mixer: down_proj(SiLU(gate) * y), gate and y the halves of gate_proj."""
        acc = self.bitlinear(L.gate_proj, m, site, S.GATE_PROJ, senders)  # (B, T, 2I)
        gate, y = acc.chunk(2, dim=-1)  # (B, T, I) each
        gate = site(S.GATE_HALF, L.gate_out, gate)  # (B, T, I) internal_bits
        y = site(S.Y, L.y_out, y)  # (B, T, I) internal_bits
        gate, y = site.send(S.GATE_HALF, gate, senders), site.send(S.Y, y, senders)  # proj_gate's messages into the GLU
        silu_gate = K.lut_lookup(gate, L.silu_gate, self.qc.internal_bits)  # (B, T, I) lut_bits
        product = site(S.GLU, L.glu_out, silu_gate * y)  # (B, T, I) internal_bits
        down = self.bitlinear(L.down_proj, product, site, S.DOWN_PROJ, senders)
        return site.send(S.DOWN_PROJ, site(S.DOWN_PROJ, L.down_out, down), senders)  # (B, T, D) act_bits, into the residual add

    def block(
        self, idx: int, x: torch.Tensor, h: torch.Tensor, probe: Optional[Probe] = None, senders: Optional[Senders] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: x += mlgru(attn_norm(x)); x += glu(mlp_norm(x)). Returns (output (B, T, D), last state).

        `senders`: the layer's event-driven messaging (None: dense); its delta state is updated in place."""
        L = self.params.layers[idx]
        site = Sites(probe, S.layer_key(idx, ""), L.scales)
        a = site(S.ATTN_NORM, L.attn_norm, x)  # (B, T, D) act_bits
        o, h = self.mlgru(L, a, h, site, senders)  # (B, T, D), (B, M)
        r = site(S.RESIDUAL_ATTN, L.residual_attn, x, o)  # (B, T, D) residual_bits
        m = site(S.MLP_NORM, L.mlp_norm, r)  # (B, T, D) act_bits
        d = self.glu(L, m, site, senders)  # (B, T, D) act_bits
        x = site(S.RESIDUAL_MLP, L.residual_mlp, r, d)  # (B, T, D) residual_bits
        return site.send(S.RESIDUAL_MLP, x, senders), h  # into the next layer (or the final norm)

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
        """Logits (B, T, vocab) and the state after the last token (one (B, M) per layer, then the
        delta encoders' if any)."""
        scales = {S.EMBEDDINGS: self.params.input_scale, S.FINAL_NORM: self.params.final_norm.out_scale, S.LOGITS: 1.0}
        site = Sites(probe, "", scales)
        x = site(S.EMBEDDINGS, self.embed, input_ids)  # (B, T, D) residual_bits
        layers, batch = len(self.params.layers), input_ids.shape[0]
        if state is None:
            state = self.init_state(batch)
        event_driven = msg.event_driven(self.qc)
        stateful = msg.any_stateful(self.qc)
        if stateful and len(state) != 2 * layers:
            raise ValueError(
                f"a delta-messaging state has {2 * layers} entries (MLGRU states, then encoder states), got {len(state)}"
            )
        new_state, encoders = [], []
        for idx in range(layers):
            senders = None
            if event_driven:
                senders = Senders(self.qc, self.params.layers[idx], state[layers + idx] if stateful else None)
            x, h = self.block(idx, x, state[idx], probe, senders)
            new_state.append(h)
            if stateful:
                encoders.append(senders.state(batch))
        new_state += encoders
        final = site(S.FINAL_NORM, self.params.final_norm, x)  # (B, T, D) act_bits
        logits = site.record(S.LOGITS, self.host_logits(final), kind=S.HOST)  # (B, T, vocab) float, on the host
        return logits, new_state
