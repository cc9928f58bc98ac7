"""Float model -> integer model parameters: ternary weights, fixed-point gains, lookup tables, and
the integer (multiplier, shift) pairs that move values between calibrated scales.

Everything that involves floating point happens here, once. The integer model that runs afterwards
(`inspector.quant.integer_model`) only adds, multiplies, shifts, compares and looks up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from inspector import schema as S
from inspector.lm.model import BitLinear, Block, HGRNBitForCausalLM, RMSNorm
from inspector.lm.ternary import TernaryMatrix, int8_matmul
from inspector.quant import kernels as K
from inspector.quant.config import QuantConfig


def site_scale(max_abs: float, bits: int, qc: QuantConfig) -> float:
    """Symmetric per-tensor scale from a calibrated max|x|, by `qc.scale_rule` (see QuantConfig).

    "max_code": max|x| / (2^(b-1) - 1), max|x| lands on the largest code, nothing calibrated clips;
    powers of two round the scale up (ceil), which keeps that property.
    "study": max|x| / ((qmax - qmin) / 2) = max|x| / (2^(b-1) - 0.5), as `calculate_qparams` of the
    paper's study (stevenabreu7/matmulfreellm, mmfreelm/models/hgrn_bit/quantization.py); powers of
    two round log2(scale) to nearest, as it does. max|x| then lands on code 127.5 and saturates.
    """
    max_abs = max_abs if max_abs > 0 else 1.0
    if qc.scale_rule == "study":
        scale = max_abs / (((1 << bits) - 1) / 2)
        return 2.0 ** round(math.log2(scale)) if qc.pow2_scales else scale
    scale = max_abs / ((1 << (bits - 1)) - 1)
    return 2.0 ** math.ceil(math.log2(scale)) if qc.pow2_scales else scale


@dataclass(frozen=True)
class Requant:
    """Integer rescale into a `bits`-bit code: round(v * multiplier / 2^shift), saturated."""

    multiplier: int
    shift: int
    bits: int

    @classmethod
    def for_ratio(cls, ratio: float, bits: int, qc: QuantConfig) -> "Requant":
        multiplier, shift = K.fixed_multiplier(ratio, qc.multiplier_bits)
        return cls(multiplier, shift, bits)

    def __call__(self, value: torch.Tensor, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        return K.requantize(value, self.multiplier, self.shift, self.bits, clipped)


@dataclass(frozen=True)
class ResidualAdd:
    """out = round((a * m_a + b * m_b) / 2^shift): adds two codes that live on different scales."""

    m_a: int
    m_b: int
    shift: int
    bits: int

    @classmethod
    def for_scales(cls, scale_a: float, scale_b: float, scale_out: float, bits: int, qc: QuantConfig) -> "ResidualAdd":
        big = max(scale_a, scale_b) / scale_out
        m_big, shift = K.fixed_multiplier(big, qc.multiplier_bits)
        m_a = int(round(scale_a / scale_out * 2.0**shift))
        m_b = int(round(scale_b / scale_out * 2.0**shift))
        return cls(m_a, m_b, shift, bits)

    def __call__(self, a: torch.Tensor, b: torch.Tensor, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        total = a * self.m_a
        total.add_(b * self.m_b)
        return K.saturate_(K.round_shift_(total, self.shift), self.bits, clipped)


@dataclass
class IntNorm:
    """An RMSNorm in integers: fixed-point gains, eps on the input's integer scale, output requant."""

    weight_q: torch.Tensor
    eps_q: int
    frac_bits: int
    out: Requant
    out_scale: float

    def __post_init__(self) -> None:
        self.scaled_gain = self.weight_q * self.out.multiplier  # the gain and the requantization multiplier, folded

    def __call__(self, codes: torch.Tensor, clipped: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        return K.rmsnorm_int(
            codes, self.weight_q, self.eps_q, self.frac_bits, self.out.multiplier, self.out.shift, self.out.bits, clipped,
            self.scaled_gain,
        )


@dataclass
class IntBitLinear:
    """A BitLinear on a neuro-core: integer RMSNorm -> 8-bit spikes -> ternary synapses -> accumulator."""

    name: str
    norm: IntNorm
    matrix: TernaryMatrix  # the float model's own int8 ternary matrix, shared, not copied
    beta: float  # mean|W| rounded to float32: the real weight is weight * beta
    acc_scale: float  # real value of one accumulator unit: input scale * beta

    @property
    def weight(self) -> torch.Tensor:
        """The ternary matrix as int64 (out, in): a copy, for scalar references and the Learn tour."""
        return self.matrix.values.to(K.INT)

    def accumulate(self, spikes: torch.Tensor) -> torch.Tensor:
        """The synaptic accumulation sum_j W[o, j] * spikes[j], exactly (see inspector.lm.ternary).

        Spikes saturated to at most 8 bits fit int8 by construction: straight to the int8 GEMM,
        without the range check that codes of unknown width need.
        """
        if self.norm.out.bits <= 8:
            return int8_matmul(spikes, self.matrix.values)
        return self.matrix.accumulate(spikes)


@dataclass
class IntLayer:
    attn_norm: IntNorm
    i_proj: IntBitLinear
    f_proj: IntBitLinear
    g_proj: IntBitLinear
    i_out: Requant
    f_out: Requant
    g_out: Requant
    sigmoid_f: torch.Tensor  # (2^internal_bits,) forget gate sigmoid, fixed point with gate_frac_bits
    lower_bound_q: Optional[torch.Tensor]  # (mixer,) fixed point, None in layer 0
    silu_i: torch.Tensor  # (2^internal_bits,) SiLU of the input projection code, lut_bits signed
    input_to_state: Requant
    g_norm: IntNorm
    state_to_code: Requant
    silu_h: torch.Tensor
    gated_out: Requant
    o_proj: IntBitLinear
    o_out: Requant
    residual_attn: ResidualAdd
    mlp_norm: IntNorm
    gate_proj: IntBitLinear
    gate_out: Requant
    y_out: Requant
    silu_gate: torch.Tensor
    glu_out: Requant
    down_proj: IntBitLinear
    down_out: Requant
    residual_mlp: ResidualAdd
    scales: dict[str, float]  # real value of one code unit at each probed site


@dataclass
class IntegerParams:
    qc: QuantConfig
    input_scale: float  # scale of the embedding codes sent to the chip
    layers: list[IntLayer]
    final_norm: IntNorm
    calibration: dict[str, float]


def _norm(module: RMSNorm, in_scale: float, out_scale: float, out_bits: int, qc: QuantConfig) -> IntNorm:
    frac = qc.norm_weight_frac_bits
    weight_q = torch.round(module.weight.detach().double() * (1 << frac)).to(K.INT)
    eps_q = int(round(module.eps / in_scale**2))
    # codes * inv * weight_q has real value y * 2^(F + frac); divide by the output scale.
    ratio = 1.0 / (2.0 ** (qc.norm_frac_bits + frac) * out_scale)
    return IntNorm(weight_q, eps_q, qc.norm_frac_bits, Requant.for_ratio(ratio, out_bits, qc), out_scale)


def _bitlinear(name: str, module: BitLinear, in_scale: float, cal: dict[str, float], qc: QuantConfig) -> IntBitLinear:
    spike_scale = site_scale(cal[name + ".norm"], qc.spike_bits, qc)
    norm = _norm(module.norm, in_scale, spike_scale, qc.spike_bits, qc)
    matrix = module.ternary if module.frozen else TernaryMatrix.from_weight(module.weight)
    # float64 sums still vary in their last bits with the thread count; rounded to float32 they do
    # not, so every multiplier derived from beta is the same on every machine.
    beta = float(np.float32(matrix.beta))
    return IntBitLinear(name, norm, matrix, beta, spike_scale * beta)


def _sigmoid_table(scale: float, qc: QuantConfig) -> torch.Tensor:
    codes = torch.arange(-(1 << (qc.internal_bits - 1)), 1 << (qc.internal_bits - 1), dtype=torch.float64)
    return torch.round(torch.sigmoid(codes * scale) * (1 << qc.gate_frac_bits)).to(K.INT)


def _silu_table(scale: float, qc: QuantConfig) -> tuple[torch.Tensor, float]:
    codes = torch.arange(-(1 << (qc.internal_bits - 1)), 1 << (qc.internal_bits - 1), dtype=torch.float64)
    values = F.silu(codes * scale)
    out_scale = float(values.abs().max()) / ((1 << (qc.lut_bits - 1)) - 1)
    return torch.round(values / out_scale).to(K.INT), out_scale


@torch.no_grad()
def convert_layer(
    idx: int, block: Block, lower_bound: Optional[torch.Tensor], x_scale: float, cal: dict[str, float], qc: QuantConfig
) -> IntLayer:
    """One layer's integer parameters, from its float block, its input scale and the calibration maxima.

    A function of one layer so that a model too large to convert whole can be converted (and run)
    one layer at a time (`inspector.chip.published`). `lower_bound` is the layer's row of
    `layer_lower_bounds()` (ignored for layer 0, as in the float model).
    """
    act, res, inner = qc.act_bits, qc.residual_bits, qc.internal_bits
    p = S.layer_key(idx, "")
    m = f"model.layers.{idx}."
    s: dict[str, float] = {"input": x_scale}
    s[S.ATTN_NORM] = site_scale(cal[p + S.ATTN_NORM], act, qc)
    attn_norm = _norm(block.attn_norm, x_scale, s[S.ATTN_NORM], act, qc)
    i_proj = _bitlinear(m + f"attn.{S.I_PROJ}", block.attn.i_proj, s[S.ATTN_NORM], cal, qc)
    f_proj = _bitlinear(m + f"attn.{S.F_PROJ}", block.attn.f_proj, s[S.ATTN_NORM], cal, qc)
    g_proj = _bitlinear(m + f"attn.{S.G_PROJ}", block.attn.g_proj, s[S.ATTN_NORM], cal, qc)
    for key in (S.I_PROJ, S.F_PROJ, S.G_PROJ):
        s[key] = site_scale(cal[p + key], inner, qc)
    one = 1 << qc.gate_frac_bits
    s[S.FORGET_GATE] = 1.0 / one
    lower = None
    if lower_bound is not None and idx > 0:
        lower = torch.round(lower_bound.double() * one).to(K.INT)
    silu_i, s[S.INPUT_GATE] = _silu_table(s[S.I_PROJ], qc)
    max_h = cal[p + S.HIDDEN] * qc.state_headroom
    s[S.HIDDEN] = site_scale(max_h, qc.state_bits, qc)
    s[S.HIDDEN_CODE] = site_scale(cal[p + S.HIDDEN], inner, qc)
    silu_h, s["swish_hidden"] = _silu_table(s[S.HIDDEN_CODE], qc)
    s[S.G_NORM] = site_scale(cal[m + f"attn.{S.G_NORM}"], inner, qc)
    s[S.GATED_OUTPUT] = site_scale(cal[p + S.GATED_OUTPUT], inner, qc)
    o_proj = _bitlinear(m + f"attn.{S.O_PROJ}", block.attn.o_proj, s[S.GATED_OUTPUT], cal, qc)
    s[S.O_PROJ] = site_scale(cal[p + S.O_PROJ], act, qc)
    s[S.RESIDUAL_ATTN] = site_scale(cal[p + S.RESIDUAL_ATTN], res, qc)
    s[S.MLP_NORM] = site_scale(cal[p + S.MLP_NORM], act, qc)
    gate_proj = _bitlinear(m + f"mlp.{S.GATE_PROJ}", block.mlp.gate_proj, s[S.MLP_NORM], cal, qc)
    s[S.GATE_HALF] = site_scale(cal[p + f"{S.GATE_PROJ}.{S.GATE_HALF}"], inner, qc)
    s[S.Y] = site_scale(cal[p + f"{S.GATE_PROJ}.{S.Y}"], inner, qc)
    silu_gate, s["silu_gate"] = _silu_table(s[S.GATE_HALF], qc)
    s[S.GLU] = site_scale(cal[p + S.GLU], inner, qc)
    down_proj = _bitlinear(m + f"mlp.{S.DOWN_PROJ}", block.mlp.down_proj, s[S.GLU], cal, qc)
    s[S.DOWN_PROJ] = site_scale(cal[p + S.DOWN_PROJ], act, qc)
    s[S.RESIDUAL_MLP] = site_scale(cal[p + S.RESIDUAL_MLP], res, qc)
    return IntLayer(
        attn_norm=attn_norm,
        i_proj=i_proj,
        f_proj=f_proj,
        g_proj=g_proj,
        i_out=Requant.for_ratio(i_proj.acc_scale / s[S.I_PROJ], inner, qc),
        f_out=Requant.for_ratio(f_proj.acc_scale / s[S.F_PROJ], inner, qc),
        g_out=Requant.for_ratio(g_proj.acc_scale / s[S.G_PROJ], inner, qc),
        sigmoid_f=_sigmoid_table(s[S.F_PROJ], qc),
        lower_bound_q=lower,
        silu_i=silu_i,
        input_to_state=Requant.for_ratio(s[S.INPUT_GATE] / s[S.HIDDEN], qc.state_bits, qc),
        g_norm=_norm(block.attn.g_norm, s[S.G_PROJ], s[S.G_NORM], inner, qc),
        state_to_code=Requant.for_ratio(s[S.HIDDEN] / s[S.HIDDEN_CODE], inner, qc),
        silu_h=silu_h,
        gated_out=Requant.for_ratio(s[S.G_NORM] * s["swish_hidden"] / s[S.GATED_OUTPUT], inner, qc),
        o_proj=o_proj,
        o_out=Requant.for_ratio(o_proj.acc_scale / s[S.O_PROJ], act, qc),
        residual_attn=ResidualAdd.for_scales(x_scale, s[S.O_PROJ], s[S.RESIDUAL_ATTN], res, qc),
        mlp_norm=_norm(block.mlp_norm, s[S.RESIDUAL_ATTN], s[S.MLP_NORM], act, qc),
        gate_proj=gate_proj,
        gate_out=Requant.for_ratio(gate_proj.acc_scale / s[S.GATE_HALF], inner, qc),
        y_out=Requant.for_ratio(gate_proj.acc_scale / s[S.Y], inner, qc),
        silu_gate=silu_gate,
        glu_out=Requant.for_ratio(s["silu_gate"] * s[S.Y] / s[S.GLU], inner, qc),
        down_proj=down_proj,
        down_out=Requant.for_ratio(down_proj.acc_scale / s[S.DOWN_PROJ], act, qc),
        residual_mlp=ResidualAdd.for_scales(s[S.RESIDUAL_ATTN], s[S.DOWN_PROJ], s[S.RESIDUAL_MLP], res, qc),
        scales=s,
    )


def convert_final_norm(norm: RMSNorm, x_scale: float, cal: dict[str, float], qc: QuantConfig) -> IntNorm:
    """The final RMSNorm in integers, reading the last layer's residual codes."""
    return _norm(norm, x_scale, site_scale(cal[S.FINAL_NORM], qc.act_bits, qc), qc.act_bits, qc)


@torch.no_grad()
def convert(model: HGRNBitForCausalLM, calibration: dict[str, float], qc: QuantConfig) -> IntegerParams:
    """Build the integer model's parameters from a float model and its calibration maxima."""
    bounds = model.model.layer_lower_bounds()
    x_scale = input_scale = site_scale(calibration[S.EMBEDDINGS], qc.residual_bits, qc)
    layers = []
    for idx, block in enumerate(model.model.layers):
        layers.append(convert_layer(idx, block, bounds[idx] if bounds is not None else None, x_scale, calibration, qc))
        x_scale = layers[-1].scales[S.RESIDUAL_MLP]
    final_norm = convert_final_norm(model.model.norm, x_scale, calibration, qc)
    return IntegerParams(qc, input_scale, layers, final_norm, dict(calibration))
