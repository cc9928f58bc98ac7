"""Every bit width, shift, table size and rounding rule of the integer model, in one place.

Defaults follow the seed paper (Abreu et al., arXiv 2503.18002, "hardware-aware quantization",
whose GPU study is public in stevenabreu7/matmulfreellm `mmfreelm/models/hgrn_bit/quantization.py`):
- 8-bit symmetric per-tensor activations at the block sites (block input, after each norm, the
  token-mixer output, the MLP output, after each residual add, the final norm), min/max calibrated,
  scale = max|x| / (2^(b-1) - 1), with an option to round scales to powers of two;
- ternary weights (the model's own absmean quantization);
- embedding and LM head left off-chip, in floating point (always: the integer model starts at the
  first block's input and ends at the final norm);
- 24-bit neuron states and graded-spike messages (`message_bits`, the payload width the Lava graph's
  synapses are built with), the widths Lava models for Loihi 2.

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
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from inspector import schema as S
from inspector.errors import InspectorError
from inspector.overrides import replace_known
from inspector.quant.messaging import CORE_GROUPS, DELTA, DENSE, GROUPS, MODES


class QuantConfigError(InspectorError):
    """A QuantConfig that the hardware could not represent, or an unknown override key."""


SCALE_RULES = ("max_code", "study")
REGISTER_BITS = 24  # Loihi 2 neuron state width (Lava's fixed-point models: 24-bit)
# Messaging thresholds the bit-width search walks up (codes; 1 sends what 0 sends, so the ladder skips it).
VTH_RUNGS = (0, 2, 3, 4, 6, 8, 12, 16, 24, 32)

Number = Union[int, float]
Bound = Union[Number, Callable[["QuantConfig"], Number]]  # a fixed limit, or one read from the other fields


@dataclass(frozen=True)
class Sweep:
    """How sweeps vary a field: its *lower* setting (cheaper, less precise), its *most precise*
    setting, the lowest setting the bit-width search may reach (`minimum`, bit widths) or the
    thresholds it walks up (`rungs`), and whether the field may differ per layer (only if changing
    it leaves the scales the layers hand to each other unchanged)."""

    lower: Any
    precise: Any
    minimum: Optional[int] = None
    per_layer: bool = True
    rungs: tuple[int, ...] = ()


@dataclass(frozen=True)
class FieldInfo:
    """What a QuantConfig field is, beside its type and default: the one source the validation, the
    sidebar, the URL and the sweeps read.

    `low`/`high`: the accepted range (a number, or a function of the config for limits that follow
    another field), `why` says where it comes from (quoted when a value is outside it); `choices`:
    the accepted values of a text field; `sweep`: how sweeps vary it (None: not a precision choice,
    never swept); `url`: its query parameter in the app's links (None: not in links); `control`: the
    sidebar widget that sets it ("slider", "choice", "toggle", "steps", "number"; "" for none).
    """

    label: str
    low: Optional[Bound] = None
    high: Optional[Bound] = None
    why: str = ""
    choices: tuple = ()
    sweep: Optional[Sweep] = None
    url: Optional[str] = None
    control: str = ""

    def bounds(self, qc: "QuantConfig") -> tuple[Optional[Number], Optional[Number]]:
        """(lowest, highest) accepted under `qc` (None: unbounded on that side)."""
        return tuple(bound(qc) if callable(bound) else bound for bound in (self.low, self.high))  # type: ignore[return-value]


INFO = "quant_field"  # the key of a FieldInfo in a dataclass field's metadata


def setting(default: Any, info: FieldInfo) -> Any:
    """A QuantConfig field with its FieldInfo."""
    return dataclasses.field(default=default, metadata={INFO: info})


# The range of a width that travels as graded spikes.
_SPIKE_RANGE: dict[str, Any] = {
    "low": 2, "high": lambda qc: qc.message_bits,
    "why": "activations travel as graded spikes, so they need 2 bits up to message_bits",
}


def _mode(sender: str) -> Any:
    """The mode field of the messaging group whose neurons are `sender` (a schema neuron group)."""
    group = CORE_GROUPS[sender].key
    return setting(DENSE, FieldInfo(
        GROUPS[group].label, choices=MODES, sweep=Sweep(DELTA, DENSE, per_layer=False),
        url=f"messaging_{group}", control="choice",
    ))


def _vth(sender: str) -> Any:
    """The threshold field of the messaging group whose neurons are `sender` (a schema neuron group)."""
    group = CORE_GROUPS[sender].key
    width = GROUPS[group].width  # the QuantConfig width of the group's codes
    return setting(0, FieldInfo(
        f"vth of the {GROUPS[group].label} (codes)", low=0, high=lambda qc: 1 << (getattr(qc, width) - 1),
        why=f"a threshold is a magnitude in codes, at most the largest |code| the group sends (2^({width}-1))",
        sweep=Sweep(8, 0, per_layer=False, rungs=VTH_RUNGS), url=f"vth_{group}", control="number",
    ))


# A field's type (resolved from the annotations, not read from their text) -> a test of a value and the
# words for what it must be. bool is a subclass of int, so integers and numbers refuse it.
_TYPE_CHECKS: dict[type, tuple[Callable[[Any], bool], str]] = {
    int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "text"),
}

# Keys QuantConfig no longer has, and why: a saved file or a link that still carries one loads, with
# a note that the key was ignored.
RETIRED_FIELDS = {
    "register_bits": f"neuron registers are Loihi 2's {REGISTER_BITS} bits; it was never a setting of the model",
    "embedding_on_host": "the embedding always runs on the host (the Hardware page's layout choice says where it "
    "would go on a chip)",
    "lm_head_on_host": "the LM head always runs on the host (the Hardware page's layout choice says where it would "
    "go on a chip)",
}

NoteFn = Callable[[str], None]


def retired_note(key: str) -> str:
    return f"{key} is no longer a QuantConfig setting, so it was ignored: {RETIRED_FIELDS[key]}"


@dataclass(frozen=True)
class QuantConfig:
    act_bits: int = setting(8, FieldInfo(  # block sites: after each norm, mixer output, MLP output, final norm (paper: 8)
        "Block activation bits", **_SPIKE_RANGE, sweep=Sweep(6, 16, minimum=3), url="act_bits", control="slider",
    ))
    residual_bits: int = setting(8, FieldInfo(  # residual stream after each add (paper: 8)
        "Residual stream bits", **_SPIKE_RANGE, sweep=Sweep(6, 16, minimum=3, per_layer=False), url="residual_bits",
        control="slider",
    ))
    spike_bits: int = setting(8, FieldInfo(  # BitLinear inputs: the model's own 8-bit activation quantization
        "BitLinear input bits (graded spikes)", **_SPIKE_RANGE, sweep=Sweep(6, 16, minimum=3), url="spike_bits",
        control="slider",
    ))
    internal_bits: int = setting(12, FieldInfo(  # inside the MLGRU and the GLU (paper: left in floating point)
        "MLGRU / GLU internal bits", low=2, high=lambda qc: min(16, qc.message_bits),
        why="sigmoid/SiLU tables have one entry per code, and 2^internal_bits entries beyond 65536 do not fit a "
        "core's memory", sweep=Sweep(10, 16, minimum=6), url="internal_bits", control="slider",
    ))
    state_bits: int = setting(24, FieldInfo(  # MLGRU hidden state, a neuron state register
        "MLGRU state bits", low=2, high=REGISTER_BITS, why=f"the state must fit a {REGISTER_BITS}-bit neuron register",
        sweep=Sweep(16, 24, minimum=8), url="state_bits", control="slider",
    ))
    gate_frac_bits: int = setting(12, FieldInfo(  # forget gate f and (1 - f) as unsigned fixed point in [0, 1]
        "Gate fraction bits", low=4, high=REGISTER_BITS - 2,
        why="gates are unsigned fixed point inside a neuron register, with 2 bits to spare",
        sweep=Sweep(8, 16, minimum=4), url="gate_frac_bits", control="slider",
    ))
    lut_bits: int = setting(16, FieldInfo(  # signed output width of the SiLU tables
        "SiLU table output bits", low=4, high=REGISTER_BITS, why="table outputs must fit a neuron register",
        sweep=Sweep(10, 24, minimum=6), url="lut_bits", control="slider",
    ))
    norm_frac_bits: int = setting(16, FieldInfo(  # F in the inverse square root floor(2^F / sqrt(mean square))
        "Inverse square root fraction bits (RMSNorm)", low=4, high=24, why="the inverse square root's fraction bits",
        sweep=Sweep(10, 24, minimum=6), url="norm_frac_bits", control="slider",
    ))
    norm_weight_frac_bits: int = setting(10, FieldInfo(  # RMSNorm gains as fixed point
        "RMSNorm gain fraction bits", low=2, high=16, why="RMSNorm gains as fixed point", sweep=Sweep(6, 16, minimum=3),
    ))
    multiplier_bits: int = setting(16, FieldInfo(  # width of requantization multipliers
        "Requantization multiplier bits", low=4, high=24, why="requantization multipliers",
        sweep=Sweep(8, 24, minimum=6),
    ))
    message_bits: int = setting(24, FieldInfo(  # graded-spike payload width of the synapses (Lava's Dense num_message_bits)
        "Graded-spike message bits", low=2, high=32, why="Loihi 2 messages are at most 32 bits wide",
    ))
    accumulator_bits: int = setting(24, FieldInfo(  # synaptic input accumulator of a neuron
        "Synaptic accumulator bits", low=2, high=32, why="Loihi 2 registers are at most 32 bits wide",
        sweep=Sweep(16, 32, minimum=12), url="accumulator_bits", control="slider",
    ))
    pow2_scales: bool = setting(False, FieldInfo(  # paper option: round every scale to a power of two (shift-only)
        "Power-of-two scales (shift-only)", sweep=Sweep(True, False, per_layer=False), url="pow2", control="toggle",
    ))
    scale_rule: str = setting("max_code", FieldInfo(  # "max_code": max|x| / (2^(b-1)-1); "study": max|x| / (2^(b-1)-0.5)
        "Scale rule", choices=SCALE_RULES, url="scale_rule", control="choice",
    ))
    state_headroom: float = setting(2.0, FieldInfo(  # h is scaled so the calibration max uses 1/headroom of its range
        "State headroom", low=0.0625, high=64.0,
        why="below 1, states beyond the calibrated range clip; 1/16 is as far as that is worth pushing",
        sweep=Sweep(1.0, 4.0), url="headroom", control="steps",
    ))
    calibration_tokens: int = setting(2048, FieldInfo(  # tokens of text used to calibrate the scales
        "Calibration tokens", low=16, why="calibration needs some text to see each site's range",
    ))
    # Event-driven messaging of the graded spikes into each BitLinear (inspector.quant.messaging), one
    # mode and one threshold per messaging group (`messaging.GROUPS`, which tests check these against):
    # "dense" (every nonzero code), "delta" (Lava's sigma-delta) or "threshold"; vth in codes.
    messaging_ifg: str = _mode(S.NORM_ATTN)  # norm_attn -> the i, f, g projections
    messaging_o: str = _mode(S.MLGRU)  # mlgru -> o_proj
    messaging_gate: str = _mode(S.NORM_MLP)  # norm_mlp -> gate_proj
    messaging_down: str = _mode(S.GLU_GROUP)  # glu -> down_proj
    vth_ifg: int = _vth(S.NORM_ATTN)
    vth_o: int = _vth(S.MLGRU)
    vth_gate: int = _vth(S.NORM_MLP)
    vth_down: int = _vth(S.GLU_GROUP)
    messaging_ifg_out: str = _mode(S.PROJ_IFG)  # proj_ifg -> the MLGRU (the i, f, g codes)
    messaging_o_out: str = _mode(S.PROJ_O)  # proj_o -> the residual add in norm_mlp
    messaging_gate_out: str = _mode(S.PROJ_GATE)  # proj_gate -> the GLU (the gate and y codes)
    messaging_down_out: str = _mode(S.PROJ_DOWN)  # proj_down -> the residual add
    messaging_residual: str = _mode(S.RESIDUAL)  # residual -> the next layer (or the final norm)
    vth_ifg_out: int = _vth(S.PROJ_IFG)
    vth_o_out: int = _vth(S.PROJ_O)
    vth_gate_out: int = _vth(S.PROJ_GATE)
    vth_down_out: int = _vth(S.PROJ_DOWN)
    vth_residual: int = _vth(S.RESIDUAL)
    messaging_cum_error: bool = setting(False, FieldInfo(  # delta: Lava's cum_error (send when the accumulated error reaches vth)
        "delta: cumulative error (Lava's cum_error)", sweep=Sweep(True, False, per_layer=False), url="cum_error",
        control="toggle",
    ))

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every field against its declared type, then its choices, then its range (`FieldInfo`)."""
        infos = field_infos(type(self))
        for name, kind in field_types(type(self)).items():
            value = getattr(self, name)
            accepts, what = _TYPE_CHECKS[kind]
            if not accepts(value):
                raise QuantConfigError(f"QuantConfig.{name} must be {what}, got {value!r}")
            info = infos[name]
            if info.choices and value not in info.choices:
                raise QuantConfigError(f"QuantConfig.{name}={value!r}: choose one of {', '.join(map(str, info.choices))}")
        for name, info in infos.items():
            check_range(f"QuantConfig.{name}", getattr(self, name), *info.bounds(self), info.why, QuantConfigError)

    def limits(self) -> dict[str, tuple[Number, Number]]:
        """Each field bounded on both sides: its (lowest, highest) value under this config.

        The one source of these limits: `validate`, the sidebar's widgets, the URL and every text
        spec (A/B box, --quant, files) all use them, so no input accepts what another refuses."""
        limits = {}
        for name, info in field_infos(type(self)).items():
            lo, hi = info.bounds(self)
            if lo is not None and hi is not None:
                limits[name] = (lo, hi)
        return limits

    @classmethod
    def preset(cls, name: str) -> "QuantConfig":
        """A named configuration from `QUANT_PRESETS`; an unknown name is an error listing the known ones."""
        if name not in QUANT_PRESETS:
            raise QuantConfigError(f"unknown QuantConfig preset {name!r}; known presets: {', '.join(QUANT_PRESETS)}")
        return cls(**QUANT_PRESETS[name]["settings"])

    def with_overrides(self, overrides: dict[str, Any], note: Optional[NoteFn] = None) -> "QuantConfig":
        """A copy with some fields changed; unknown keys are an error that names them.

        Keys QuantConfig no longer has (`RETIRED_FIELDS`) are dropped and said through `note` (a
        Python warning when no `note` is given), so files written before they went keep loading."""
        for key in sorted(set(overrides) & set(RETIRED_FIELDS)):
            if note is not None:
                note(retired_note(key))
            else:
                warnings.warn(retired_note(key), stacklevel=2)
        kept = {k: v for k, v in overrides.items() if k not in RETIRED_FIELDS}
        return replace_known(self, kept, QuantConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_range(
    name: str, value: Number, lo: Optional[Number], hi: Optional[Number], why: str, error: type[InspectorError],
) -> None:
    """Refuse `value` outside lo..hi (either may be None: open on that side), naming the field and why."""
    because = f": {why}" if why else ""
    if lo is not None and hi is not None and not lo <= value <= hi:
        raise error(f"{name}={value} is outside {lo}..{hi}{because}")
    if lo is not None and hi is None and value < lo:
        raise error(f"{name}={value} is below {lo}{because}")
    if hi is not None and lo is None and value > hi:
        raise error(f"{name}={value} is above {hi}{because}")


@functools.cache
def field_types(cls: Optional[type] = None) -> dict[str, type]:
    """Every field of QuantConfig (or a subclass) with its declared type. A field of a type `validate`
    cannot check is an error here, when the first config is made, rather than a field never validated."""
    cls = cls or QuantConfig
    hints = typing.get_type_hints(cls)
    types = {field.name: hints[field.name] for field in dataclasses.fields(cls)}
    unchecked = {name: kind for name, kind in types.items() if kind not in _TYPE_CHECKS}
    if unchecked:
        raise TypeError(f"QuantConfig fields of a type validate() cannot check: {unchecked}")
    return types


@functools.cache
def field_infos(cls: Optional[type] = None) -> dict[str, FieldInfo]:
    """Every field of QuantConfig (or a subclass) with its FieldInfo, in declaration order. A field
    declared without one is an error here, so no field escapes validation, the URL or the sweeps."""
    cls = cls or QuantConfig
    missing = [f.name for f in dataclasses.fields(cls) if INFO not in f.metadata]
    if missing:
        raise TypeError(f"QuantConfig fields declared without a FieldInfo (use quant.config.setting): {missing}")
    return {f.name: f.metadata[INFO] for f in dataclasses.fields(cls)}


def field_info(name: str) -> FieldInfo:
    return field_infos()[name]


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
