"""The integer model's probed sites: their names, kinds and register widths, in one table.

A *site* is a point of the model where a value is quantized to a register (an 8-bit spike, a 24-bit
neuron state, ...) and where probes, diffs, calibration and pages look. Keys are `layers.{i}.{site}`
inside the layer stack and bare names outside it (`embeddings`, `final_norm`, `logits`). Every module
that names a site imports it from here, so a renamed or added site is one change.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- kinds: what a site's codes are, which decides how pages and probes treat them ------------------
ACTIVATION = "activation"  # a signed code sent on to the next operation
ACCUMULATOR = "accumulator"  # a synaptic sum inside a BitLinear core
GATE = "gate"  # an unsigned fixed-point gate in [0, 1]
STATE = "state"  # a neuron state kept from token to token (the MLGRU hidden state)
HOST = "host"  # computed on the host in floating point (the logits), not on the chip

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
GATE_PROJ = "gate_proj"  # the float model's name for both halves; the integer model has GATE and Y
GATE_HALF, Y = "gate", "y"
GLU = "glu"
DOWN_PROJ = "down_proj"
RESIDUAL_MLP = "residual_mlp"

# A BitLinear core also reports its input spikes and its accumulator: `{projection}.spikes`, `.accumulator`.
SPIKES = ".spikes"
ACCUMULATOR_SUFFIX = ".accumulator"

# The six ternary projections of a layer, as named in IntLayer and in checkpoints.
PROJECTIONS = ("i_proj", "f_proj", "g_proj", "o_proj", "gate_proj", "down_proj")

# The sites the depth charts and the CLI's SQNR table show by default: each mixer's norm, state or
# output, and the residual stream after it.
DEPTH_SITES = (ATTN_NORM, HIDDEN, O_PROJ, RESIDUAL_ATTN, DOWN_PROJ, RESIDUAL_MLP)


@dataclass(frozen=True)
class Site:
    """A site's kind and the QuantConfig width its codes live in."""

    kind: str
    width: str  # a QuantConfig field ("gate": gate_frac_bits + 1, unsigned)


LAYER_SITES: dict[str, Site] = {
    ATTN_NORM: Site(ACTIVATION, "act_bits"),
    I_PROJ: Site(ACTIVATION, "internal_bits"),
    F_PROJ: Site(ACTIVATION, "internal_bits"),
    G_PROJ: Site(ACTIVATION, "internal_bits"),
    FORGET_GATE: Site(GATE, "gate"),
    INPUT_GATE: Site(ACTIVATION, "lut_bits"),
    HIDDEN: Site(STATE, "state_bits"),
    G_NORM: Site(ACTIVATION, "internal_bits"),
    HIDDEN_CODE: Site(ACTIVATION, "internal_bits"),
    GATED_OUTPUT: Site(ACTIVATION, "internal_bits"),
    O_PROJ: Site(ACTIVATION, "act_bits"),
    RESIDUAL_ATTN: Site(ACTIVATION, "residual_bits"),
    MLP_NORM: Site(ACTIVATION, "act_bits"),
    GATE_HALF: Site(ACTIVATION, "internal_bits"),
    Y: Site(ACTIVATION, "internal_bits"),
    GLU: Site(ACTIVATION, "internal_bits"),
    DOWN_PROJ: Site(ACTIVATION, "act_bits"),
    RESIDUAL_MLP: Site(ACTIVATION, "residual_bits"),
}
OUTER_SITES: dict[str, Site] = {EMBEDDINGS: Site(ACTIVATION, "residual_bits"), FINAL_NORM: Site(ACTIVATION, "act_bits")}


def layer_key(layer: int, site: str) -> str:
    """(3, "hidden") -> "layers.3.hidden"."""
    return f"layers.{layer}.{site}"


def split_site_key(key: str) -> tuple[int, str]:
    """"layers.3.hidden" -> (3, "hidden"); keys outside the layer stack get layer -1."""
    if key.startswith("layers."):
        _, layer, site = key.split(".", 2)
        return int(layer), site
    return -1, key
