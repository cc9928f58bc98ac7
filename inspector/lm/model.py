"""The float MatMul-free language model (HGRNBit), whole, in plain PyTorch on the CPU.

This mirrors the public reference code of the MMfreeLM family (ridgerchu/matmulfreellm,
`mmfreelm/models/hgrn_bit` and `mmfreelm/layers/hgrn_bit.py`) operation for operation, with the
same `state_dict` key names, so that downloaded checkpoints load unchanged. No Triton: the fused
kernels of the reference are written out as the loops and reductions they compute.

Where the shared team notes and the code disagree we follow the code:
- the MLGRU output gate is `g_norm(g_proj(x), h)` with the reference's `FusedRMSNormSwishGate(x, o)`,
  which RMS-normalizes its *first* argument and multiplies by `swish` of its *second*:
  `o = rmsnorm(g_proj(x)) * swish(h)`;
- the recurrence `h_t = f_t * h_{t-1} + i_t` takes the forget gate itself (not its log);
- `lm_head` is a BitLinear (with its own RMSNorm), applied after the final `model.norm`;
- every BitLinear computes what the released checkpoints run, `FusedBitLinear`
  (`mmfreelm/ops/fusedbitnet.py`; `modeling_hgrn_bit.py` and `layers/hgrn_bit.py` both import
  `FusedBitLinear as BitLinear`), not the plain `BitLinear` of `ops/bitnet.py`. The two differ in two
  conventions, both followed here (see `FUSED_BITLINEAR_EPS` and `round_half_away`).

Every site (names in `inspector.schema`) can be recorded into a `trace` dict (key `layers.{i}.{site}`),
so that calibration observes it and the integer model can be compared with this one tensor by tensor.

This file and `inspector.quant.integer_model` are twins: every step below has its integer form there,
a method of `IntegerLM` (`BitLinear.forward` is `bitlinear`, `MLGRU.forward` `mlgru`,
`MLGRU.recurrence` `recurrence`, `GLU.forward` `glu`, `Block.forward` `block`,
`HGRNBitForCausalLM.forward` `__call__`), in the same order, with the same sites recorded at the same
points (`tests/test_twins.py`). Here the steps stay `nn.Module`s, because checkpoints, training and
calibration's hooks need the module tree. Shapes: B batch, T tokens, D hidden, M mixer width, I GLU width.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from inspector import schema as S
from inspector.lm.config import HGRNBitConfig
from inspector.lm.ternary import TernaryMatrix

# The eps of a BitLinear's RMSNorm. `FusedBitLinear.forward` (fusedbitnet.py, `forward` of the class
# `FusedBitLinear`) calls `layer_norm_linear_quant_fn(x, self.norm.weight, self.norm.bias, self.weight,
# self.bias, is_rms_norm=True)` without an eps, so that function's default `eps=1e-6` applies
# (`def layer_norm_linear_quant_fn(..., eps=1e-6, ...)` in the same file). The `RMSNorm(eps=1e-8)` that
# BitLinear.__init__ builds contributes only its weight; 1e-8 is used only by the unfused ops/bitnet.py.
FUSED_BITLINEAR_EPS = 1e-6


class FeedingTrace(Protocol):
    """A trace that also *feeds* the model (`inspector.compare.local_error`): after recording a site it
    may hand the next operation another value than the one computed (what the integer model received
    there, dequantized), and it supplies the previous MLGRU states, so that each site is computed from
    given inputs. A plain dict lacks these methods and the model then runs on its own values."""

    def __setitem__(self, key: str, value: torch.Tensor) -> None: ...

    def replace(self, key: str, value: torch.Tensor) -> torch.Tensor: ...

    def previous_states(self, key: str, initial: torch.Tensor, steps: int) -> torch.Tensor: ...


# Where sites are recorded: a dict (key -> value), a feeding trace, or None (nowhere).
Trace = Optional["dict[str, torch.Tensor] | FeedingTrace"]


class Sites:
    """Where one layer (or the model outside the layers) reports its sites: the trace (or none) and the
    key prefix. Without a trace nothing is kept."""

    def __init__(self, trace: Trace, prefix: str = ""):
        self.trace, self.prefix = trace, prefix
        self.watched = trace is not None
        self.feeds = self.watched and hasattr(trace, "replace")

    def record(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Keep a site's value; a feeding trace may hand back another value for the next operation."""
        if not self.watched:
            return value
        self.trace[self.prefix + name] = value.detach()
        return self.trace.replace(self.prefix + name, value) if self.feeds else value


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, in at least float32 as the reference kernel does."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        rstd = torch.rsqrt(x32.square().mean(dim=-1, keepdim=True) + self.eps)
        return (x32 * rstd * self.weight.to(x32.dtype)).to(x.dtype)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, halves away from zero: the fused kernel's `tl.math.round` (CUDA `round`).

    `torch.round` rounds halves to even, which differs on every exact .5 (common in 8-bit codes).
    Computed as trunc + a carry from the exactly representable fraction `x - trunc(x)`, so values just
    below .5 are not pushed over by an `x + 0.5` that rounds up in floating point.
    """
    whole = torch.trunc(x)
    # in place on the temporaries (the float model's hottest elementwise chain): the same operations, the same bits
    carry = torch.sub(x, whole).abs_().ge_(0.5)  # 1.0 where the fraction is a half or more, in x's dtype
    return whole.add_(carry.mul_(torch.sign(x)))


def activation_quant_int(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token absmax quantization to 8 bits: returns (integer-valued tensor, scale 127/max|x|).

    As `_layer_norm_fwd_quant_kernel` in fusedbitnet.py: `scale = 127 / max(max|y|, 1e-5)`,
    `round(y * scale)` with halves away from zero, clamp to [-128, 127].
    """
    lowest, highest = torch.aminmax(x, dim=-1, keepdim=True)  # max|x| = max(-min, max): one pass, no |x| copy
    scale = 127.0 / torch.maximum(-lowest, highest).abs_().clamp(min=1e-5)  # abs_: a NaN's sign as abs() leaves it
    return round_half_away(x * scale).clamp(-128, 127), scale


class BitLinear(nn.Linear):
    """RMSNorm -> 8-bit activations x ternary weights, with the straight-through estimator.

    Two forms. Trainable (as built): the float `weight` is the latent weight and the quantize-
    dequantize happens in the forward pass; gradients flow as if it were the identity (the `.detach()`
    trick of BitNet), which is how the reference trains. Frozen (`freeze()`, what checkpoints are
    loaded into): only the ternary matrix is kept, as int8 in a `TernaryMatrix` that the integer model
    shares, and the forward pass accumulates the 8-bit activation codes against it exactly in
    integers, then scales once by beta / activation scale. That is the same number the reference
    computes as `F.linear(codes / scale, ternary * beta)`, with the float rounding of the sum removed.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.norm = RMSNorm(in_features, eps=FUSED_BITLINEAR_EPS)
        self.ternary: Optional[TernaryMatrix] = None

    @property
    def frozen(self) -> bool:
        return self.ternary is not None

    def freeze(self, ternary: Optional[TernaryMatrix] = None) -> None:
        """Keep only the ternary matrix (given, or computed from `weight`) and free the float weight."""
        self.ternary = ternary if ternary is not None else TernaryMatrix.from_weight(self.weight)
        del self.weight
        self.register_parameter("weight", None)

    def quantized_weight(self) -> torch.Tensor:
        """Ternary weights, dequantized (trainable form only)."""
        scale = 1.0 / self.weight.abs().mean().clamp(min=1e-5)
        w_q = (self.weight * scale).round().clamp(-1, 1) / scale
        return self.weight + (w_q - self.weight).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RMSNorm, 8-bit activation codes, ternary weights: (B, T, in) -> (B, T, out)."""
        x_norm = self.norm(x)  # (B, T, in)
        x_int, x_scale = activation_quant_int(x_norm)  # (B, T, in) integer-valued, (B, T, 1)
        if self.ternary is not None:
            # (B, T, out) exact: sum_j W[o, j] * x_int[j], then one scaling by beta / activation scale
            acc = self.ternary.accumulate(x_int.to(torch.int64)).to(x_norm.dtype)
            return acc * (self.ternary.beta / x_scale)
        x_q = x_norm + (x_int / x_scale - x_norm).detach()  # (B, T, in) straight-through
        return F.linear(x_q, self.quantized_weight())  # (B, T, out)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        if self.frozen and prefix + "weight" in state_dict:  # a float weight loaded into a frozen layer: ternarize it
            self.ternary = TernaryMatrix.from_weight(state_dict[prefix + "weight"])
            state_dict = {k: v for k, v in state_dict.items() if k != prefix + "weight"}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)


class MLGRU(nn.Module):
    """The MatMul-free linear GRU token mixer (`HGRNBitAttention` in the reference).

    f = sigmoid(f_proj(x)), lifted by the layer's lower bound; i = silu(i_proj(x)) * (1 - f);
    h_t = f_t * h_{t-1} + i_t; out = o_proj(rmsnorm(g_proj(x)) * swish(h)).
    """

    def __init__(self, config: HGRNBitConfig, layer_idx: int):
        super().__init__()
        width = config.mixer_size
        self.layer_idx = layer_idx
        self.i_proj = BitLinear(config.hidden_size, width)
        self.f_proj = BitLinear(config.hidden_size, width)
        self.g_proj = BitLinear(config.hidden_size, width)
        self.g_norm = RMSNorm(width, eps=config.rms_norm_eps)
        self.o_proj = BitLinear(width, config.hidden_size)

    def forward(
        self, a: torch.Tensor, lower_bound: Optional[torch.Tensor], state: Optional[torch.Tensor], site: Sites
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The MLGRU token mixer; returns (o_proj output (B, T, D), last state (B, M))."""
        i = site.record(S.I_PROJ, self.i_proj(a))  # (B, T, M)
        f = site.record(S.F_PROJ, self.f_proj(a))  # (B, T, M)
        g = site.record(S.G_PROJ, self.g_proj(a))  # (B, T, M)
        f = torch.sigmoid(f)  # (B, T, M) in (0, 1)
        if lower_bound is not None and self.layer_idx > 0:
            f = lower_bound + (1 - lower_bound) * f
        f = site.record(S.FORGET_GATE, f)  # (B, T, M)
        i = site.record(S.INPUT_GATE, F.silu(i) * (1 - f))  # (B, T, M)
        h = state if state is not None else i.new_zeros(i.shape[0], i.shape[-1])  # (B, M)
        hs, h = self.recurrence(f, i, h, site)  # (B, T, M), (B, M)
        gated = site.record(S.GATED_OUTPUT, self.g_norm(g) * F.silu(hs))  # (B, T, M)
        o = site.record(S.O_PROJ, self.o_proj(gated))  # (B, T, D)
        return o, h

    def recurrence(
        self, f: torch.Tensor, i: torch.Tensor, h: torch.Tensor, site: Sites
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """h_t = f_t * h_{t-1} + i_t: (all states (B, T, M), last state (B, M))."""
        if site.feeds:
            # Fed states: every step starts from a given h_{t-1}, so the steps are independent.
            before = site.trace.previous_states(site.prefix + S.HIDDEN, h, f.shape[1])  # (B, T, M)
            hs = f * before + i
            return site.record(S.HIDDEN, hs), hs[:, -1]  # (B, T, M), (B, M)
        states = []
        for t in range(f.shape[1]):
            h = f[:, t] * h + i[:, t]  # (B, M)
            states.append(h)
        return site.record(S.HIDDEN, torch.stack(states, dim=1)), h  # (B, T, M), (B, M)


class GLU(nn.Module):
    """The channel mixer (`HGRNBitMLP`): down_proj(silu(gate) * y) with gate, y = gate_proj(x)."""

    def __init__(self, config: HGRNBitConfig):
        super().__init__()
        inner = config.mlp_intermediate_size
        self.gate_proj = BitLinear(config.hidden_size, inner * 2)
        self.down_proj = BitLinear(inner, config.hidden_size)

    def forward(self, m: torch.Tensor, site: Sites) -> torch.Tensor:
        """The GLU channel mixer: down_proj(silu(gate) * y), gate and y the halves of gate_proj."""
        gate, y = self.gate_proj(m).chunk(2, dim=-1)  # (B, T, I) each
        gate = site.record(S.GATE_HALF, gate)  # (B, T, I)
        y = site.record(S.Y, y)  # (B, T, I)
        product = site.record(S.GLU, F.silu(gate) * y)  # (B, T, I)
        return site.record(S.DOWN_PROJ, self.down_proj(product))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm residual block: x += mlgru(attn_norm(x)); x += glu(mlp_norm(x))."""

    def __init__(self, config: HGRNBitConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.attn = MLGRU(config, layer_idx)
        self.mlp_norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = GLU(config)

    def forward(
        self,
        x: torch.Tensor,
        lower_bound: Optional[torch.Tensor],
        state: Optional[torch.Tensor],
        trace: Trace = None,
        prefix: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: x += mlgru(attn_norm(x)); x += glu(mlp_norm(x)). Returns (output (B, T, D), last state).

        `trace`: where the sites are recorded (None: nowhere), under keys `prefix + site`."""
        site = Sites(trace, prefix)
        a = site.record(S.ATTN_NORM, self.attn_norm(x))  # (B, T, D)
        o, h = self.attn(a, lower_bound, state, site)  # (B, T, D), (B, M)
        r = site.record(S.RESIDUAL_ATTN, x + o)  # (B, T, D)
        m = site.record(S.MLP_NORM, self.mlp_norm(r))  # (B, T, D)
        d = self.mlp(m, site)  # (B, T, D)
        return site.record(S.RESIDUAL_MLP, r + d), h  # (B, T, D)


class HGRNBitModel(nn.Module):
    """Embedding, the stack of blocks, and the final norm (`model.*` keys of a checkpoint)."""

    def __init__(self, config: HGRNBitConfig, initialize: bool = True):
        super().__init__()
        self.config = config
        # Without `initialize` (a checkpoint fills every tensor) the embedding skips its own random init: on the
        # meta device that init goes through torch's reference kernels, whose first use imports torch._dynamo (seconds).
        shape = (config.vocab_size, config.hidden_size)
        self.embeddings = nn.Embedding(*shape) if initialize else nn.Embedding(*shape, _weight=torch.empty(shape))
        if config.use_lower_bound:
            self.lower_bounds = nn.Parameter(torch.zeros(config.num_hidden_layers, config.hidden_size))
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def layer_lower_bounds(self) -> Optional[torch.Tensor]:
        """Row k is layer k's forget-gate floor: cumsum(softmax) shifted so that layer 0 gets 0."""
        if not self.config.use_lower_bound:
            return None
        probs = self.lower_bounds.softmax(dim=0)
        return probs.cumsum(dim=0) - probs[0]


class HGRNBitForCausalLM(nn.Module):
    """The language model: `model` plus a BitLinear `lm_head`. Recurrent state is one vector per layer."""

    def __init__(self, config: HGRNBitConfig, initialize: bool = True):
        super().__init__()
        config.validate()
        self.config = config
        self.model = HGRNBitModel(config, initialize)
        self.lm_head = BitLinear(config.hidden_size, config.vocab_size)
        if initialize:  # the checkpoint loader builds on the meta device and fills every tensor itself
            self.reset_parameters()

    def bitlinears(self) -> list[tuple[str, BitLinear]]:
        return [(name, m) for name, m in self.named_modules() if isinstance(m, BitLinear)]

    def freeze(self) -> "HGRNBitForCausalLM":
        """Inference form: every BitLinear keeps only its int8 ternary matrix (see BitLinear), and no
        parameter needs a gradient. What checkpoints are loaded into."""
        for _, module in self.bitlinears():
            if not module.frozen:
                module.freeze()
        self.requires_grad_(False)
        return self.eval()

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Initialization of the reference: N(0, 0.02) for projections and embeddings, rescaled
        residual outputs, Xavier with gain 2^-2.5 in the mixer."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std, generator=generator)
        for layer in self.model.layers:
            for proj in (layer.attn.i_proj, layer.attn.f_proj, layer.attn.g_proj, layer.attn.o_proj):
                nn.init.xavier_uniform_(proj.weight, gain=2**-2.5, generator=generator)
            with torch.no_grad():
                scale = (2 * self.config.num_hidden_layers) ** 0.5
                layer.attn.o_proj.weight /= scale
                layer.mlp.down_proj.weight /= scale

    def init_state(self, batch_size: int = 1) -> list[torch.Tensor]:
        width = self.config.mixer_size
        return [torch.zeros(batch_size, width) for _ in range(self.config.num_hidden_layers)]

    def forward(
        self,
        input_ids: torch.Tensor,
        state: Optional[list[torch.Tensor]] = None,
        trace: Trace = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (B, T, vocab) and the recurrent state after the last token (one (B, M) per layer)."""
        site = Sites(trace)
        x = site.record(S.EMBEDDINGS, self.model.embeddings(input_ids))  # (B, T, D)
        bounds = self.model.layer_lower_bounds()
        new_state = []
        for idx, layer in enumerate(self.model.layers):
            bound = bounds[idx] if bounds is not None else None
            x, h = layer(x, bound, state[idx] if state is not None else None, trace, S.layer_key(idx, ""))
            new_state.append(h)
        final = site.record(S.FINAL_NORM, self.model.norm(x))  # (B, T, D)
        logits = site.record(S.LOGITS, self.lm_head(final))  # (B, T, vocab)
        return logits, new_state

    def num_parameters(self) -> int:
        """Parameters of the model as trained (a frozen BitLinear counts its ternary matrix)."""
        ternary = sum(m.ternary.values.numel() for _, m in self.bitlinears() if m.frozen)
        return sum(p.numel() for p in self.parameters()) + ternary
