"""The layer schema: every probed site and every neuron group of the integer model, declared once.

Read top to bottom, this file is the data flow of one HGRNBit layer on the chip:

- A *site* is a point of the model where a value is quantized to a register (an 8-bit spike, a
  24-bit neuron state, ...) and where probes, diffs, calibration and pages look. Keys are
  `layers.{i}.{site}` inside the layer stack and bare names outside it (`embeddings`,
  `final_norm`, `logits`). Each site names its kind, the QuantConfig width its codes live in, the
  neuron group that computes it, how many values it has (a size symbol), and whether its nonzero
  codes are messages the group sends to the next group.
- A *neuron group* is one fused neuron program of the core map (the "layer fusion" of the paper),
  one Lava process, one row block of the Hardware page. Each group declares how many neurons it
  has, how many inputs each neuron sums, the projections whose ternary synapses it holds, how its
  message sites combine into one message per neuron, which groups read its outputs, and, when its
  graded spikes can be sent event-driven, its messaging key (`QuantConfig.messaging_<key>`).
- A *projection* is one ternary BitLinear between two groups: the group whose spikes feed it, the
  group whose neurons hold its synapses, and the sites its outputs are requantized into.

The probes, the core mapper, the Lava graph's readback layout, the conversion, event-driven
messaging, local error, exports and pages all read their names and tables from here, so a renamed
or added site or group is one change here (tests/test_schema.py checks that no other module spells
a site or group name as a string). This module imports nothing from the package: it is the bottom layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

# -- kinds: what a site's codes are, which decides how pages and probes treat them ------------------
ACTIVATION = "activation"  # a signed code sent on to the next operation
ACCUMULATOR = "accumulator"  # a synaptic sum inside a BitLinear core
GATE = "gate"  # an unsigned fixed-point gate in [0, 1]
STATE = "state"  # a neuron state kept from token to token (the MLGRU hidden state)
HOST = "host"  # computed on the host in floating point (the logits), not on the chip

# The width of the forget gate is not a QuantConfig field: gate_frac_bits + 1 bits, unsigned.
GATE_WIDTH = "gate"

# -- size symbols: how many values a site or neurons a group has, in the model's dimensions ----------
# d = hidden_size, m = mixer_size (the MLGRU width), ffn = mlp_intermediate_size, vocab = vocab_size,
# with an optional integer factor in front ("3m": the i, f and g projections side by side).
DIMENSIONS = ("d", "m", "ffn", "vocab")


@dataclass(frozen=True)
class Dims:
    """The model's dimensions that size symbols refer to."""

    d: int
    m: int
    ffn: int
    vocab: int = 0


def size_of(symbol: str, dims: Dims) -> int:
    """"3m" -> 3 * dims.m: the number a size symbol stands for in one model."""
    digits = len(symbol) - len(symbol.lstrip("0123456789"))
    factor = int(symbol[:digits]) if digits else 1
    name = symbol[digits:]
    if name not in DIMENSIONS:
        raise KeyError(f"unknown size symbol {symbol!r}; dimensions are {', '.join(DIMENSIONS)}")
    return factor * getattr(dims, name)


# -- neuron group names, in the order one layer computes them ---------------------------------------
NORM_ATTN = "norm_attn"
PROJ_IFG = "proj_ifg"
MLGRU = "mlgru"
PROJ_O = "proj_o"
NORM_MLP = "norm_mlp"
PROJ_GATE = "proj_gate"
GLU_GROUP = "glu"  # the group computes the site of the same name
PROJ_DOWN = "proj_down"
RESIDUAL = "residual"
FINAL_NORM_GROUP = "final_norm"  # after the last layer; computes the site of the same name
LM_HEAD = "lm_head"  # the LM head as a group: on the host unless the Hardware page asks for it on chip

# -- sites outside the layer stack -----------------------------------------------------------------
EMBEDDINGS = "embeddings"
FINAL_NORM = "final_norm"
LOGITS = "logits"

# -- sites of one layer, in the order the layer computes them ----------------------------------------
ATTN_NORM = "attn_norm"
I_PROJ, F_PROJ, G_PROJ = "i_proj", "f_proj", "g_proj"
FORGET_GATE = "forget_gate"
INPUT_GATE = "input_gate"
HIDDEN = "hidden"
HIDDEN_CODE = "hidden_code"  # the state read out as an internal_bits code, for the SiLU table
G_NORM = "g_norm"
GATED_OUTPUT = "gated_output"
O_PROJ = "o_proj"
RESIDUAL_ATTN = "residual_attn"
MLP_NORM = "mlp_norm"
GATE_PROJ = "gate_proj"  # the GLU's projection; both models record its two halves as the sites GATE_HALF and Y
GATE_HALF, Y = "gate", "y"
GLU = "glu"
DOWN_PROJ = "down_proj"
RESIDUAL_MLP = "residual_mlp"

# A BitLinear core also reports its input spikes and its accumulator: `{projection}.spikes`, `.accumulator`.
SPIKES = ".spikes"
ACCUMULATOR_SUFFIX = ".accumulator"


def spikes(projection: str) -> str:
    """"o_proj" -> "o_proj.spikes": the site of a BitLinear's input spikes (its input norm's codes)."""
    return projection + SPIKES


def accumulator(projection: str) -> str:
    """"o_proj" -> "o_proj.accumulator": the site of a BitLinear's saturated synaptic sum."""
    return projection + ACCUMULATOR_SUFFIX


def projection_of(site: str) -> str:
    """"o_proj.spikes" -> "o_proj" (and "o_proj" -> "o_proj")."""
    return site.split(".", 1)[0]


# -- projections: the ternary BitLinears between groups ---------------------------------------------
@dataclass(frozen=True)
class Projection:
    """One ternary BitLinear: its input and output sizes, the sites its outputs are requantized into,
    and the short name of its delta encoder and sigma Vars in the Lava graph (`delta_<short>`)."""

    name: str
    short: str
    inputs: str  # size symbol of its input (the sending group's spikes)
    outputs: str  # size symbol of its accumulator
    sites: tuple[str, ...]  # the codes its accumulator is requantized into, in order


PROJECTION_TABLE: tuple[Projection, ...] = (
    Projection(I_PROJ, "i", "d", "m", (I_PROJ,)),
    Projection(F_PROJ, "f", "d", "m", (F_PROJ,)),
    Projection(G_PROJ, "g", "d", "m", (G_PROJ,)),
    Projection(O_PROJ, "o", "m", "d", (O_PROJ,)),
    Projection(GATE_PROJ, "gate", "d", "2ffn", (GATE_HALF, Y)),
    Projection(DOWN_PROJ, "down", "ffn", "d", (DOWN_PROJ,)),
)
PROJECTION_OF: dict[str, Projection] = {p.name: p for p in PROJECTION_TABLE}
# The six ternary projections of a layer, as named in IntLayer and in checkpoints.
PROJECTIONS = tuple(p.name for p in PROJECTION_TABLE)


# -- sites -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Site:
    """A probed site: its kind, the QuantConfig width its codes live in, the neuron group that
    computes it, its size symbol, and whether its nonzero codes are the group's outgoing messages."""

    name: str
    kind: str
    width: str  # a QuantConfig field, or GATE_WIDTH
    group: str
    size: str
    message: bool = False


def _bitlinear(projection: str, sender: str, holder: str) -> tuple[Site, Site]:
    """A BitLinear's input spikes (messages of the group that sends them) and its accumulator."""
    p = PROJECTION_OF[projection]
    return (
        Site(spikes(projection), ACTIVATION, "spike_bits", sender, p.inputs, message=True),
        Site(accumulator(projection), ACCUMULATOR, "accumulator_bits", holder, p.outputs),
    )


# Every probed site of one layer, in the order the integer model computes and reports them (the
# Lava graph's readback layout follows this order).
LAYER_FLOW: tuple[Site, ...] = (
    Site(ATTN_NORM, ACTIVATION, "act_bits", NORM_ATTN, "d"),
    *_bitlinear(I_PROJ, NORM_ATTN, PROJ_IFG),
    Site(I_PROJ, ACTIVATION, "internal_bits", PROJ_IFG, "m", message=True),
    *_bitlinear(F_PROJ, NORM_ATTN, PROJ_IFG),
    Site(F_PROJ, ACTIVATION, "internal_bits", PROJ_IFG, "m", message=True),
    *_bitlinear(G_PROJ, NORM_ATTN, PROJ_IFG),
    Site(G_PROJ, ACTIVATION, "internal_bits", PROJ_IFG, "m", message=True),
    Site(FORGET_GATE, GATE, GATE_WIDTH, MLGRU, "m"),
    Site(INPUT_GATE, ACTIVATION, "lut_bits", MLGRU, "m"),
    Site(HIDDEN, STATE, "state_bits", MLGRU, "m"),
    Site(G_NORM, ACTIVATION, "internal_bits", MLGRU, "m"),
    Site(HIDDEN_CODE, ACTIVATION, "internal_bits", MLGRU, "m"),
    Site(GATED_OUTPUT, ACTIVATION, "internal_bits", MLGRU, "m"),
    *_bitlinear(O_PROJ, MLGRU, PROJ_O),
    Site(O_PROJ, ACTIVATION, "act_bits", PROJ_O, "d", message=True),
    Site(RESIDUAL_ATTN, ACTIVATION, "residual_bits", NORM_MLP, "d"),
    Site(MLP_NORM, ACTIVATION, "act_bits", NORM_MLP, "d"),
    *_bitlinear(GATE_PROJ, NORM_MLP, PROJ_GATE),
    Site(GATE_HALF, ACTIVATION, "internal_bits", PROJ_GATE, "ffn", message=True),
    Site(Y, ACTIVATION, "internal_bits", PROJ_GATE, "ffn", message=True),
    Site(GLU, ACTIVATION, "internal_bits", GLU_GROUP, "ffn"),
    *_bitlinear(DOWN_PROJ, GLU_GROUP, PROJ_DOWN),
    Site(DOWN_PROJ, ACTIVATION, "act_bits", PROJ_DOWN, "d", message=True),
    Site(RESIDUAL_MLP, ACTIVATION, "residual_bits", RESIDUAL, "d", message=True),
)
# The layer's value sites (without the BitLinears' spikes and accumulators), by name.
LAYER_SITES: dict[str, Site] = {
    site.name: site for site in LAYER_FLOW if not site.name.endswith((SPIKES, ACCUMULATOR_SUFFIX))
}
# Before and after the layer stack: the embeddings are quantized on the host and sent to layer 0.
OUTER_SITES: dict[str, Site] = {
    EMBEDDINGS: Site(EMBEDDINGS, ACTIVATION, "residual_bits", "", "d"),
    FINAL_NORM: Site(FINAL_NORM, ACTIVATION, "act_bits", FINAL_NORM_GROUP, "d", message=True),
}
SITE_OF: dict[str, Site] = {site.name: site for site in LAYER_FLOW} | OUTER_SITES

# The sites the depth charts and the CLI's SQNR table show by default: each mixer's norm, state or
# output, and the residual stream after it.
DEPTH_SITES = (ATTN_NORM, HIDDEN, O_PROJ, RESIDUAL_ATTN, DOWN_PROJ, RESIDUAL_MLP)


# -- neuron groups ---------------------------------------------------------------------------------
STACK, CONCAT = "stack", "concat"  # how a group's message sites make one message count per neuron


@dataclass(frozen=True)
class Group:
    """A fused neuron group of one layer (or after the stack): one neuron program on its cores.

    `inputs`: messages each neuron sums per token (its synapses) when the group holds no projection;
    a projection group's synapses are its ternary weights. `layout`: STACK when every message site
    is sent by the same neurons (their counts add up per neuron), CONCAT when the sites are side by
    side (neuron k of the group is entry k of the concatenated sites). `consumers`: the groups that
    read its outputs, as (layer offset, group). `messaging`: the QuantConfig key of its event-driven
    messaging (`inspector.quant.messaging`): every group of the layer sends graded spikes to
    other neurons (into a BitLinear's synapses, or element-wise into a group that reads them), so
    each can send dense, sigma-delta or thresholded.
    """

    name: str
    size: str
    inputs: int = 1
    synapses: tuple[str, ...] = ()
    layout: str = CONCAT
    consumers: tuple[tuple[int, str], ...] = ()
    messaging: Optional[str] = None
    messaging_label: str = ""
    role: str = ""

    @cached_property
    def messages(self) -> tuple[str, ...]:
        """The sites that carry the group's outgoing messages, in the order it computes them."""
        return tuple(site.name for site in (*LAYER_FLOW, *OUTER_SITES.values()) if site.group == self.name and site.message)

    @cached_property
    def sites(self) -> tuple[str, ...]:
        """Every site the group computes, in order."""
        return tuple(site.name for site in (*LAYER_FLOW, *OUTER_SITES.values()) if site.group == self.name)

    @cached_property
    def feeds(self) -> tuple[str, ...]:
        """The projections its graded spikes feed (their `.spikes` sites are its messages)."""
        return tuple(projection_of(name) for name in self.messages if name.endswith(SPIKES))


# The groups of one layer, in data-flow order. The layer input x (the previous layer's `residual`,
# or the embeddings) feeds both the attention norm and the residual add in `norm_mlp`; `norm_mlp`
# sends the sum on to the MLP projections and to the final residual add.
LAYER_GROUPS: tuple[Group, ...] = (
    Group(NORM_ATTN, "d", 1, layout=STACK, consumers=((0, PROJ_IFG),), messaging="ifg",
          messaging_label="i/f/g BitLinear inputs (token mixer)",
          role="residual input -> attn RMSNorm -> the i/f/g BitLinear input norms (spikes out)"),
    Group(PROJ_IFG, "3m", synapses=(I_PROJ, F_PROJ, G_PROJ), consumers=((0, MLGRU),), messaging="ifg_out",
          messaging_label="i/f/g projection outputs (into the MLGRU)", role="ternary synapses of i_proj, f_proj, g_proj"),
    Group(MLGRU, "m", 3, consumers=((0, PROJ_O),), messaging="o", messaging_label="o_proj input",
          role="gates, the recurrent state h, g_norm, output gate, o_proj input norm"),
    Group(PROJ_O, "d", synapses=(O_PROJ,), consumers=((0, NORM_MLP),), messaging="o_out",
          messaging_label="o_proj output (into the residual add)", role="ternary synapses of o_proj"),
    Group(NORM_MLP, "d", 2, consumers=((0, PROJ_GATE), (0, RESIDUAL)), messaging="gate",
          messaging_label="gate_proj input (GLU)", role="residual add, mlp RMSNorm, gate_proj input norm"),
    Group(PROJ_GATE, "2ffn", synapses=(GATE_PROJ,), consumers=((0, GLU_GROUP),), messaging="gate_out",
          messaging_label="gate_proj outputs gate and y (into the GLU)", role="ternary synapses of gate_proj"),
    Group(GLU_GROUP, "ffn", 2, consumers=((0, PROJ_DOWN),), messaging="down", messaging_label="down_proj input",
          role="SiLU(gate) * y, down_proj input norm"),
    Group(PROJ_DOWN, "d", synapses=(DOWN_PROJ,), consumers=((0, RESIDUAL),), messaging="down_out",
          messaging_label="down_proj output (into the residual add)", role="ternary synapses of down_proj"),
    Group(RESIDUAL, "d", 2, consumers=((1, NORM_ATTN), (1, NORM_MLP)), messaging="residual",
          messaging_label="residual stream (into the next layer, or the final norm)",
          role="residual add (the next layer's input)"),
)
# After the last layer (layer -1 in the core map): its `residual` feeds the final norm instead.
# The final norm sends to the LM head on the host (a readout, not spikes into synapses) and the host
# sends the embeddings in: neither has a messaging key while the embedding and LM head run on the host.
FINAL_GROUP = Group(FINAL_NORM_GROUP, "d", 1, consumers=((0, LM_HEAD),), role="the final RMSNorm, read by the LM head")
LM_HEAD_GROUP = Group(LM_HEAD, "vocab", role="the LM head: a ternary BitLinear over the final norm (host by default)")
GROUP_ORDER = tuple(g.name for g in LAYER_GROUPS)
GROUP_OF: dict[str, Group] = {g.name: g for g in (*LAYER_GROUPS, FINAL_GROUP, LM_HEAD_GROUP)}
MESSAGING_GROUPS: tuple[Group, ...] = tuple(g for g in LAYER_GROUPS if g.messaging is not None)


def holder_of(projection: str) -> Group:
    """The group whose neurons hold a projection's synapses."""
    return next(g for g in LAYER_GROUPS if projection in g.synapses)


def sender_of(projection: str) -> Group:
    """The group whose graded spikes feed a projection."""
    return GROUP_OF[SITE_OF[spikes(projection)].group]


def site_names() -> frozenset[str]:
    """Every site and group name, with the BitLinear suffixed sites: what no other module may spell out."""
    names = set(SITE_OF) | {LOGITS, GATE_PROJ} | set(PROJECTIONS) | set(GROUP_OF)
    names |= {spikes(p) for p in PROJECTIONS} | {accumulator(p) for p in PROJECTIONS}
    return frozenset(names)


# -- keys ------------------------------------------------------------------------------------------
def layer_key(layer: int, site: str) -> str:
    """(3, "hidden") -> "layers.3.hidden"."""
    return f"layers.{layer}.{site}"


def split_site_key(key: str) -> tuple[int, str]:
    """"layers.3.hidden" -> (3, "hidden"); keys outside the layer stack get layer -1."""
    if key.startswith("layers."):
        _, layer, site = key.split(".", 2)
        return int(layer), site
    return -1, key


# -- the schema as tables, for docs/integer-model.md (tests/test_schema.py keeps the copy current) ---
def markdown_tables() -> str:
    """The layer's groups and sites as two markdown tables, in data-flow order."""
    lines = [
        "| group | what it computes | neurons | inputs per neuron | synapses of | messages (layout) | read by | messaging |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in (*LAYER_GROUPS, FINAL_GROUP):
        readers = ", ".join(f"{name}" + (f" (layer +{offset})" if offset else "") for offset, name in g.consumers)
        synapses = ", ".join(g.synapses) or "-"
        inputs = "ternary" if g.synapses else str(g.inputs)
        messages = ", ".join(f"`{m}`" for m in g.messages) + (f" ({g.layout})" if len(g.messages) > 1 else "")
        lines.append(
            f"| `{g.name}` | {g.role} | {g.size} | {inputs} | {synapses} | {messages} | {readers} | {g.messaging or '-'} |"
        )
    lines += ["", "| site | kind | width | group | size | message |", "|---|---|---|---|---|---|"]
    for s in (OUTER_SITES[EMBEDDINGS], *LAYER_FLOW, OUTER_SITES[FINAL_NORM]):
        lines.append(
            f"| `{s.name}` | {s.kind} | {s.width} | {s.group or 'host'} | {s.size} | {'yes' if s.message else ''} |"
        )
    return "\n".join(lines) + "\n"
