"""Every bit width, shift, table size and rounding rule of the integer model, in one place.

Defaults follow the seed paper (Abreu et al., arXiv 2503.18002, "hardware-aware quantization",
whose GPU study is public in stevenabreu7/matmulfreellm `mmfreelm/models/hgrn_bit/quantization.py`):
- 8-bit symmetric per-tensor activations at the block sites (block input, after each norm, the
  token-mixer output, the MLP output, after each residual add, the final norm), min/max calibrated,
  scale = max|x| / (2^(b-1) - 1), with an option to round scales to powers of two;
- ternary weights (the model's own absmean quantization);
- embedding and LM head left off-chip, in floating point (`embedding_on_host`, `lm_head_on_host`);
- 24-bit neuron states and graded-spike messages, the width Lava models for Loihi 2.

Where the paper's study keeps a site in floating point (inside the MLGRU and the GLU: its
`attn_config.quant` and `mlp_config.quant` default to None; inside RMSNorm), an integer model must
still choose; our choices and their reasons:
- Sites inside the MLGRU and the GLU (the i/f/g projections, g_norm, the state read-out, the gated
  output, gate, y and their product) use `internal_bits` = 12: measured on the sample models,
  8 bits there cost 8% validation loss on TinyStories, 12 bits cost well under 1%.
- BitLinear inputs (`spike_bits` = 8, the model's own activation width) are quantized statically
  per tensor, not per token: a per-token absmax needs a reduction over all neurons of a layer,
  which a neuro-core cannot do locally.
- Gates (sigmoid outputs, 1 - f) are unsigned fixed point with `gate_frac_bits` fraction bits;
  sigmoid and SiLU are lookup tables indexed by the input code (2^internal_bits entries: one per
  code, so the table is exact for its input) with `lut_bits`-bit outputs.
- The MLGRU state `h` is a `state_bits` (24) signed neuron state, scaled to use its full range on
  the calibration text with `state_headroom` to spare; it saturates (and is counted) beyond that.
- RMSNorm is a sum of squares, an integer mean, an exact integer inverse square root
  floor(2^F / sqrt(m)) with F = `norm_frac_bits`, and norm weights with `norm_weight_frac_bits`.
- Requantization multiplies by an integer of at most `multiplier_bits` bits and shifts right
  with round-half-up (add half, arithmetic shift): the rounding a shift unit gives for free.

Rounding. The float model rounds its per-token 8-bit activations with halves away from zero, as the
released fused kernel does (`tl.math.round` in `mmfreelm/ops/fusedbitnet.py`). The integer model
rounds every requantization half *up* (toward +infinity): add 2^(shift-1), then an arithmetic shift
right, which is what a neuro-core's shift gives without a sign test. The two agree everywhere except
on exact negative halves (-2.5 -> -3 in the float model, -2 here), a difference of one code on ties.

Scale rule (`scale_rule`). "max_code" (default) maps the calibrated max|x| onto the largest code,
max|x| / (2^(b-1) - 1), so calibrated values never clip. "study" is the paper's GPU study
(stevenabreu7/matmulfreellm, `mmfreelm/models/hgrn_bit/quantization.py`, `calculate_qparams`):
scale = max|x| / ((qmax - qmin) / 2), i.e. max|x| / 127.5 at 8 bits, and power-of-two scales
rounded to the nearest power (`2 ** round(log2(scale))`); its fake quantizer clamps then rounds, so
max|x| itself lands on the top code. The preset "paper-study" (`QUANT_PRESETS`) reproduces the
study's configuration as far as an all-integer model can.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any, Callable

from inspector.errors import InspectorError
from inspector.overrides import replace_known


class QuantConfigError(InspectorError):
    """A QuantConfig that the hardware could not represent, or an unknown override key."""


SCALE_RULES = ("max_code", "study")

# Why each bounded field has its limits (QuantConfig.limits gives the numbers).
_LIMIT_REASONS = {
    "act_bits": "activations travel as graded spikes, so they need 2 bits up to message_bits",
    "residual_bits": "activations travel as graded spikes, so they need 2 bits up to message_bits",
    "spike_bits": "activations travel as graded spikes, so they need 2 bits up to message_bits",
    "internal_bits": "sigmoid/SiLU tables have one entry per code, and 2^internal_bits entries beyond 65536 do not fit "
    "a core's memory",
    "state_bits": "the state must fit a neuron register (register_bits)",
    "gate_frac_bits": "gates are unsigned fixed point inside a neuron register, with 2 bits to spare",
    "lut_bits": "table outputs must fit a neuron register",
    "norm_frac_bits": "the inverse square root's fraction bits",
    "norm_weight_frac_bits": "RMSNorm gains as fixed point",
    "multiplier_bits": "requantization multipliers",
    "state_headroom": "below 1, states beyond the calibrated range clip; 1/16 is as far as that is worth pushing",
}

# Each field's declared type (resolved from the annotations, not read from their text) -> a test of a
# value and the words for what it must be. bool is a subclass of int, so integers and numbers refuse it.
_TYPE_CHECKS: dict[type, tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "text"),
}


@dataclass(frozen=True)
class QuantConfig:
    act_bits: int = 8  # block sites: after each norm, mixer output, MLP output, final norm (paper: 8)
    residual_bits: int = 8  # residual stream after each add (paper: 8)
    spike_bits: int = 8  # BitLinear inputs: the model's own 8-bit activation quantization
    internal_bits: int = 12  # inside the MLGRU and the GLU (paper: left in floating point)
    state_bits: int = 24  # MLGRU hidden state, a neuron state register
    gate_frac_bits: int = 12  # forget gate f and (1 - f) as unsigned fixed point in [0, 1]
    lut_bits: int = 16  # signed output width of the SiLU tables
    norm_frac_bits: int = 16  # F in the inverse square root floor(2^F / sqrt(mean square))
    norm_weight_frac_bits: int = 10  # RMSNorm gains as fixed point
    multiplier_bits: int = 16  # width of requantization multipliers
    register_bits: int = 24  # Loihi 2 neuron state width (Lava fixed-point models: 24-bit)
    message_bits: int = 24  # graded-spike payload width
    accumulator_bits: int = 24  # synaptic input accumulator of a neuron
    pow2_scales: bool = False  # paper option: round every scale to a power of two (shift-only)
    scale_rule: str = "max_code"  # "max_code": max|x| / (2^(b-1)-1); "study": max|x| / (2^(b-1)-0.5)
    state_headroom: float = 2.0  # h is scaled so the calibration max uses 1/headroom of its range (< 1: clips)
    calibration_tokens: int = 2048  # tokens of text used to calibrate the scales
    embedding_on_host: bool = True  # the embedding lookup runs off-chip (paper: floating point)
    lm_head_on_host: bool = True  # the LM head runs off-chip in floating point (paper)
    # Event-driven messaging of the graded spikes into each BitLinear (inspector.quant.messaging):
    # "dense" (every nonzero code), "delta" (Lava's sigma-delta) or "threshold"; vth in codes.
    messaging_ifg: str = "dense"  # norm_attn -> the i, f, g projections
    messaging_o: str = "dense"  # mlgru -> o_proj
    messaging_gate: str = "dense"  # norm_mlp -> gate_proj
    messaging_down: str = "dense"  # glu -> down_proj
    vth_ifg: int = 0
    vth_o: int = 0
    vth_gate: int = 0
    vth_down: int = 0
    messaging_ifg_out: str = "dense"  # proj_ifg -> the MLGRU (the i, f, g codes)
    messaging_o_out: str = "dense"  # proj_o -> the residual add in norm_mlp
    messaging_gate_out: str = "dense"  # proj_gate -> the GLU (the gate and y codes)
    messaging_down_out: str = "dense"  # proj_down -> the residual add
    messaging_residual: str = "dense"  # residual -> the next layer (or the final norm)
    vth_ifg_out: int = 0
    vth_o_out: int = 0
    vth_gate_out: int = 0
    vth_down_out: int = 0
    vth_residual: int = 0
    messaging_cum_error: bool = False  # delta: Lava's cum_error (send when the accumulated error reaches vth)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name, kind in field_types().items():
            value = getattr(self, name)
            accepts, what = _TYPE_CHECKS[kind]
            if not accepts(value):
                raise QuantConfigError(f"QuantConfig.{name} must be {what}, got {value!r}")
        if self.scale_rule not in SCALE_RULES:
            raise QuantConfigError(
                f"QuantConfig.scale_rule={self.scale_rule!r}: choose one of {', '.join(SCALE_RULES)}"
            )
        if self.register_bits > 32 or self.message_bits > 32 or self.accumulator_bits > 32:
            raise QuantConfigError("Loihi 2 registers and messages are at most 32 bits wide")
        limits = self.limits()
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise QuantConfigError(f"QuantConfig.{name}={value} is outside {lo}..{hi}: {_LIMIT_REASONS[name]}")
        if self.calibration_tokens < 16:
            raise QuantConfigError("QuantConfig.calibration_tokens must be at least 16")
        self._validate_messaging()
        if not (self.embedding_on_host and self.lm_head_on_host):
            raise QuantConfigError(
                "the embedding and LM head run on the host in this version (the paper keeps them off-chip)"
            )

    def _validate_messaging(self) -> None:
        from inspector.quant.messaging import GROUPS, MODES

        for key, group in GROUPS.items():
            top = 1 << (getattr(self, group.width) - 1)  # the largest |code| the group's messages carry
            mode, vth = getattr(self, f"messaging_{key}"), getattr(self, f"vth_{key}")
            if mode not in MODES:
                raise QuantConfigError(
                    f"QuantConfig.messaging_{key}={mode!r} is not a messaging mode; choose one of {', '.join(MODES)}"
                )
            if vth < 0:
                raise QuantConfigError(f"QuantConfig.vth_{key}={vth}: a threshold is a magnitude, it cannot be negative")
            if vth > top:
                raise QuantConfigError(
                    f"QuantConfig.vth_{key}={vth} is beyond the code range of the {group.label} "
                    f"({group.width}={getattr(self, group.width)}: |code| <= {top})"
                )
    def limits(self) -> dict[str, tuple[int | float, int | float]]:
        """Each bounded field's (lowest, highest) value, given this config's register and message widths.

        The one source of these limits: `validate`, the sidebar's sliders, the URL and every text
        spec (A/B box, --quant, files) all use them, so no input accepts what another refuses."""
        return {
            "act_bits": (2, self.message_bits),
            "residual_bits": (2, self.message_bits),
            "spike_bits": (2, self.message_bits),
            "internal_bits": (2, min(16, self.message_bits)),
            "state_bits": (2, self.register_bits),
            "gate_frac_bits": (4, self.register_bits - 2),
            "lut_bits": (4, self.register_bits),
            "norm_frac_bits": (4, 24),
            "norm_weight_frac_bits": (2, 16),
            "multiplier_bits": (4, 24),
            "state_headroom": (0.0625, 64.0),
        }

    @classmethod
    def preset(cls, name: str) -> "QuantConfig":
        """A named configuration from `QUANT_PRESETS`; an unknown name is an error listing the known ones."""
        if name not in QUANT_PRESETS:
            raise QuantConfigError(f"unknown QuantConfig preset {name!r}; known presets: {', '.join(QUANT_PRESETS)}")
        return cls(**QUANT_PRESETS[name]["settings"])

    def with_overrides(self, overrides: dict[str, Any]) -> "QuantConfig":
        """A copy with some fields changed; unknown keys are an error that names them."""
        return replace_known(self, overrides, QuantConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.cache
def field_types() -> dict[str, type]:
    """Every QuantConfig field with its declared type. A field of a type `validate` cannot check is
    an error here, when the first config is made, rather than a field that is never validated."""
    hints = typing.get_type_hints(QuantConfig)
    types = {field.name: hints[field.name] for field in dataclasses.fields(QuantConfig)}
    unchecked = {name: kind for name, kind in types.items() if kind not in _TYPE_CHECKS}
    if unchecked:
        raise TypeError(f"QuantConfig fields of a type validate() cannot check: {unchecked}")
    return types


# Named configurations: what each reproduces, and the settings that differ from the defaults.
QUANT_PRESETS: dict[str, dict[str, Any]] = {
    "default": {
        "description": "This project's defaults: 8-bit block sites, 12 bits inside the MLGRU and GLU, "
        "max|x| on the largest code.",
        "settings": {},
    },
    "paper-study": {
        "description": "The paper's GPU study (stevenabreu7/matmulfreellm quantization.py defaults): 8-bit "
        "block sites, final norm and residual adds, scale = max|x| / 127.5, no power-of-two scales. The study "
        "keeps the inside of the MLGRU and the GLU in floating point; an integer model cannot, so those sites "
        "get the widest codes the lookup tables allow (16 bits) and the state a full 24-bit register.",
        "settings": {
            "act_bits": 8,
            "residual_bits": 8,
            "spike_bits": 8,
            "internal_bits": 16,
            "state_bits": 24,
            "pow2_scales": False,
            "scale_rule": "study",
        },
    },
}
