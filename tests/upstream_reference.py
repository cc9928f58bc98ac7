"""A float64 port of the released MMfreeLM forward pass, written from the upstream code for tests.

Source: ridgerchu/matmulfreellm. The released checkpoints run `HGRNBitForCausalLM` of
`mmfreelm/models/hgrn_bit/modeling_hgrn_bit.py`, whose projections are `FusedBitLinear`
(`mmfreelm/ops/fusedbitnet.py`, imported there and in `mmfreelm/layers/hgrn_bit.py` as BitLinear).
Everything here is read off that code, not off `inspector.lm.model`, and nothing is imported from the
project: the constants below are upstream's, so a change of ours that departs from upstream fails the
tests instead of moving the reference with it.

- `fused_bitlinear`: `layer_norm_linear_quant_fn(x, norm.weight, norm.bias, weight, bias,
  is_rms_norm=True)` with the function's default `eps=1e-6`; the Triton kernel
  `_layer_norm_fwd_quant_kernel` computes `rstd = 1 / sqrt(mean(x^2) + eps)`, `y = x * rstd * w`,
  `scale = 127 / max(max|y|, 1e-5)`, `y = tl.math.round(y * scale)` (halves away from zero),
  `clamp(-128, 127) / scale`; the weight goes through `weight_quant`:
  `scale = 1 / mean|w|.clamp(min=1e-5)`, `(w * scale).round().clamp(-1, 1) / scale` (torch.round).
- `rmsnorm` (`mmfreelm/modules/layernorm.py`, RMSNorm): `x * rstd * w`, eps from config.json.
- `HGRNBitAttention.forward` (`layers/hgrn_bit.py`): `f = sigmoid(f_proj(x))`, lifted by the lower
  bound from layer 1 on, `i = swiglu(i_proj(x), 1 - f)` = `silu(i) * (1 - f)`,
  `fused_recurrent_hgrn`: `h_t = f_t * h_{t-1} + i_t`, `o = o_proj(g_norm(g_proj(x), h))` with
  `FusedRMSNormSwishGate(x, o)` = `rmsnorm(x) * o * sigmoid(o)`.
- `HGRNBitMLP.forward`: `gate, y = gate_proj(x).chunk(2, -1)`; `down_proj(swiglu(gate, y))`.
- `HGRNBitModel.forward`: `lower_bounds.softmax(0)`, `cumsum(0) - [0]`; blocks; `norm`; `lm_head`
  is a FusedBitLinear too.
"""

from __future__ import annotations

import torch

FUSED_EPS = 1e-6  # default eps of layer_norm_linear_quant_fn, which FusedBitLinear.forward does not override


def libdevice_round(x: torch.Tensor) -> torch.Tensor:
    """CUDA `round`: halves away from zero."""
    return torch.sign(x) * torch.floor(torch.abs(x) + 0.5)


def rmsnorm(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    rstd = 1.0 / torch.sqrt((x * x).sum(-1, keepdim=True) / x.shape[-1] + eps)
    return x * rstd * w


def fused_bitlinear(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    y = rmsnorm(x, sd[prefix + ".norm.weight"], FUSED_EPS)
    scale = 127.0 / torch.clamp(y.abs().max(-1, keepdim=True).values, min=1e-5)
    y = torch.clamp(libdevice_round(y * scale), -128, 127) / scale
    w = sd[prefix + ".weight"]
    w_scale = 1.0 / w.abs().mean().clamp(min=1e-5)
    w_q = (w * w_scale).round().clamp(-1, 1) / w_scale
    return y @ w_q.T


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + torch.exp(-x))


def upstream_logits(sd: dict, config: dict, tokens: list[int]) -> torch.Tensor:
    """Logits (time, vocab) of one sequence, float64, an explicit loop over time.

    `sd` maps checkpoint keys to tensors (any float dtype; cast to float64 here); `config` is the
    parsed config.json dict.
    """
    sd = {k: v.double() for k, v in sd.items()}
    n_layers = config["num_hidden_layers"]
    eps = config.get("rms_norm_eps", 1e-6)
    width = config["hidden_size"] * config.get("expand_ratio", 1)
    bounds = None
    if config.get("use_lower_bound", True):
        soft = torch.softmax(sd["model.lower_bounds"], dim=0)
        bounds = soft.cumsum(0) - soft[0]
    states = [torch.zeros(width, dtype=torch.float64) for _ in range(n_layers)]
    out = []
    for token in tokens:
        x = sd["model.embeddings.weight"][token]
        for k in range(n_layers):
            p = f"model.layers.{k}."
            residual = x
            a = rmsnorm(x, sd[p + "attn_norm.weight"], eps)
            i = fused_bitlinear(sd, p + "attn.i_proj", a)
            f = sigmoid(fused_bitlinear(sd, p + "attn.f_proj", a))
            if bounds is not None and k > 0:
                f = bounds[k] + (1 - bounds[k]) * f
            i = i * sigmoid(i) * (1 - f)
            states[k] = f * states[k] + i
            g = fused_bitlinear(sd, p + "attn.g_proj", a)
            h = states[k]
            gated = rmsnorm(g, sd[p + "attn.g_norm.weight"], eps) * h * sigmoid(h)
            x = residual + fused_bitlinear(sd, p + "attn.o_proj", gated)
            residual = x
            m = rmsnorm(x, sd[p + "mlp_norm.weight"], eps)
            both = fused_bitlinear(sd, p + "mlp.gate_proj", m)
            gate, y = both.chunk(2, -1)
            x = residual + fused_bitlinear(sd, p + "mlp.down_proj", gate * sigmoid(gate) * y)
        x = rmsnorm(x, sd["model.norm.weight"], eps)
        out.append(fused_bitlinear(sd, "lm_head", x))
    return torch.stack(out)
