"""What the Lava processes are built from: plain integers and numpy arrays taken from the converted
model (`IntegerParams`), nothing callable.

Why a module of its own: the Lava graph is meant to be an independent implementation of the
integer model. It shares the converted model's *data* (QuantConfig widths, lookup tables, norm
gains, requantization multipliers and shifts, scales) and none of its functions, so a bug in the
emulator's arithmetic cannot hide in both. Everything here is picklable: it is sent to the worker
process that builds the graph (see worker.py). Lava itself is not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspector import schema as S
from inspector.quant import messaging
from inspector.quant.convert import IntegerParams, IntLayer, IntNorm, Requant, ResidualAdd
from inspector.schema import PROJECTIONS

# Neuron groups of one layer, in data-flow order: the schema's groups (the core mapper's), each of
# which becomes one Lava process.
GROUPS = S.GROUP_ORDER


@dataclass(frozen=True)
class NormConst:
    """An integer RMSNorm: gains (fixed point), eps on the input's code scale, output requantization."""

    gain: np.ndarray  # (n,) int32
    eps: int
    frac_bits: int  # F of the inverse square root floor(2^F / sqrt(mean square))
    multiplier: int
    shift: int
    bits: int


@dataclass(frozen=True)
class RequantConst:
    """value * multiplier / 2^shift, rounded half up, saturated to a signed `bits`-bit code."""

    multiplier: int
    shift: int
    bits: int


@dataclass(frozen=True)
class AddConst:
    """(a * m_a + b * m_b) / 2^shift, rounded half up, saturated: the residual add of two scales."""

    m_a: int
    m_b: int
    shift: int
    bits: int


def norm_const(norm: IntNorm) -> NormConst:
    out = norm.out
    return NormConst(
        norm.weight_q.numpy().astype(np.int32), int(norm.eps_q), int(norm.frac_bits), out.multiplier, out.shift, out.bits,
    )


def requant_const(requant: Requant) -> RequantConst:
    return RequantConst(requant.multiplier, requant.shift, requant.bits)


def add_const(add: ResidualAdd) -> AddConst:
    return AddConst(add.m_a, add.m_b, add.shift, add.bits)


def table(values) -> np.ndarray:
    """A lookup table (one entry per input code) as the int32 array a neuron program would hold."""
    return values.numpy().astype(np.int32)


@dataclass(frozen=True)
class SiteSlot:
    """Where one probed site sits in a layer's readback message (its codes; its clipped mask follows
    the codes of all sites). `site` is the name without the "layers.N." prefix."""

    site: str
    group: str
    kind: str
    size: int
    offset: int


@dataclass(frozen=True)
class ReadbackLayout:
    """One layer's readback message, assembled by Lava from every group process's part:

        [codes of every site | their clipped masks | messages each group neuron sent |
         update rounds per group | what each BitLinear's input neurons sent | reports]

    Every group process sends a full-size vector that is zero outside its own slots, and all of
    them are connected to one Extractor, whose InPort adds what arrives (Lava sums fan-in).
    `reports` counts the processes that reported: all of them when the layer is done.
    """

    slots: tuple[SiteSlot, ...]
    group_neurons: tuple[tuple[str, int], ...]
    # per message site of the schema (`i_proj.spikes`, `i_proj`, ..., `residual_mlp`), its width: the
    # payloads its neurons sent (0 = no message), which differ from the site's codes under
    # event-driven messaging (inspector.quant.messaging)
    sent: tuple[tuple[str, int], ...] = ()

    @property
    def codes_size(self) -> int:
        return sum(slot.size for slot in self.slots)

    @property
    def messages_offset(self) -> int:
        return 2 * self.codes_size

    def messages_slice(self, group: str) -> slice:
        start = self.messages_offset
        for name, neurons in self.group_neurons:
            if name == group:
                return slice(start, start + neurons)
            start += neurons
        raise KeyError(group)

    @property
    def rounds_offset(self) -> int:
        return self.messages_offset + sum(n for _, n in self.group_neurons)

    def rounds_index(self, group: str) -> int:
        return self.rounds_offset + GROUPS.index(group)

    @property
    def sent_offset(self) -> int:
        return self.rounds_offset + len(GROUPS)

    def sent_slice(self, site: str) -> slice:
        start = self.sent_offset
        for name, size in self.sent:
            if name == site:
                return slice(start, start + size)
            start += size
        raise KeyError(site)

    @property
    def size(self) -> int:
        return self.sent_offset + sum(n for _, n in self.sent) + 1  # the last element counts the reports

    def slot(self, site: str) -> SiteSlot:
        for slot in self.slots:
            if slot.site == site:
                return slot
        raise KeyError(site)


def layer_layout(hidden: int, mixer: int, inner: int) -> ReadbackLayout:
    """The probed sites of one layer in the order the host reports them to a probe (the order in
    which the integer model computes them, `inspector.schema.LAYER_FLOW`), each with the group
    process that produces it."""
    dims = S.Dims(hidden, mixer, inner)
    slots, offset = [], 0
    for site in S.LAYER_FLOW:
        size = S.size_of(site.size, dims)
        slots.append(SiteSlot(site.name, site.group, site.kind, size, offset))
        offset += size
    neurons = tuple((g, S.size_of(S.GROUP_OF[g].size, dims)) for g in GROUPS)
    sent = tuple((site.name, S.size_of(site.size, dims)) for site in S.LAYER_FLOW if site.message)
    return ReadbackLayout(tuple(slots), neurons, sent)


def site_scale(layer: IntLayer, site: str) -> float:
    """Real value of one code unit at a site (host side: for dequantizing what the graph reports)."""
    if site.endswith(S.SPIKES):
        return getattr(layer, S.projection_of(site)).norm.out_scale
    if site.endswith(S.ACCUMULATOR_SUFFIX):
        return getattr(layer, S.projection_of(site)).acc_scale
    return layer.scales[site]


@dataclass(frozen=True)
class LayerSpec:
    """The data of one layer's group processes."""

    hidden: int
    mixer: int
    inner: int
    attn_norm: NormConst
    proj_norms: dict[str, NormConst]  # the input norm of each BitLinear
    proj_out: dict[str, RequantConst]  # accumulator -> code, per output ("i_proj", ..., "gate", "y", "down_proj")
    sigmoid_f: np.ndarray
    lower_bound: np.ndarray | None  # (mixer,) fixed point; None in layer 0
    silu_i: np.ndarray
    input_to_state: RequantConst
    g_norm: NormConst
    state_to_code: RequantConst
    silu_h: np.ndarray
    gated_out: RequantConst
    residual_attn: AddConst
    mlp_norm: NormConst
    silu_gate: np.ndarray
    glu_out: RequantConst
    residual_mlp: AddConst


@dataclass(frozen=True)
class GraphSpec:
    """Everything the graph's neuron processes are built from (no synaptic weights: see `synapse_weights`)."""

    qc_internal_bits: int
    qc_gate_frac_bits: int
    qc_state_bits: int
    qc_accumulator_bits: int
    qc_message_bits: int  # graded-spike payload width of the Dense synapses
    layers: tuple[LayerSpec, ...]
    final_norm: NormConst
    layout: ReadbackLayout
    # (mode, vth, cum_error) of each sending group (inspector.quant.messaging): per projection for the
    # groups whose spikes feed it, per messaging key for the groups that send element-wise
    messaging: dict[str, tuple[str, int, bool]] = field(default_factory=dict)


def layer_spec(layer: IntLayer, hidden: int, mixer: int, inner: int) -> LayerSpec:
    proj_out = {
        S.I_PROJ: layer.i_out, S.F_PROJ: layer.f_out, S.G_PROJ: layer.g_out, S.O_PROJ: layer.o_out,
        S.GATE_HALF: layer.gate_out, S.Y: layer.y_out, S.DOWN_PROJ: layer.down_out,
    }
    return LayerSpec(
        hidden=hidden,
        mixer=mixer,
        inner=inner,
        attn_norm=norm_const(layer.attn_norm),
        proj_norms={name: norm_const(getattr(layer, name).norm) for name in PROJECTIONS},
        proj_out={key: requant_const(value) for key, value in proj_out.items()},
        sigmoid_f=table(layer.sigmoid_f),
        lower_bound=None if layer.lower_bound_q is None else table(layer.lower_bound_q),
        silu_i=table(layer.silu_i),
        input_to_state=requant_const(layer.input_to_state),
        g_norm=norm_const(layer.g_norm),
        state_to_code=requant_const(layer.state_to_code),
        silu_h=table(layer.silu_h),
        gated_out=requant_const(layer.gated_out),
        residual_attn=add_const(layer.residual_attn),
        mlp_norm=norm_const(layer.mlp_norm),
        silu_gate=table(layer.silu_gate),
        glu_out=requant_const(layer.glu_out),
        residual_mlp=add_const(layer.residual_mlp),
    )


def graph_spec(params: IntegerParams) -> GraphSpec:
    """The graph's data, from the converted model."""
    first = params.layers[0]
    hidden = first.attn_norm.weight_q.numel()
    mixer = first.g_norm.weight_q.numel()
    inner = first.down_proj.norm.weight_q.numel()
    qc = params.qc
    return GraphSpec(
        qc_internal_bits=qc.internal_bits,
        qc_gate_frac_bits=qc.gate_frac_bits,
        qc_state_bits=qc.state_bits,
        qc_accumulator_bits=qc.accumulator_bits,
        qc_message_bits=qc.message_bits,
        layers=tuple(layer_spec(layer, hidden, mixer, inner) for layer in params.layers),
        final_norm=norm_const(params.final_norm),
        layout=layer_layout(hidden, mixer, inner),
        messaging={
            name: (m.mode, m.vth, m.cum_error) for name in PROJECTIONS for m in [messaging.for_projection(qc, name)]
        } | {
            key: (m.mode, m.vth, m.cum_error)
            for key, group in messaging.GROUPS.items() if not group.projections for m in [messaging.setting(qc, key)]
        },
    )


SynapseWeights = list[dict[str, np.ndarray]]  # per layer, per projection: (out, in) int8 in {-1, 0, 1}


def synapse_weights(params: IntegerParams) -> SynapseWeights:
    """The ternary weights of every projection, one byte each: what the Dense processes are built from."""
    return [{name: getattr(layer, name).matrix.values.numpy() for name in PROJECTIONS} for layer in params.layers]
