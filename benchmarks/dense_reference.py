"""The fixed yardstick of the scale benchmark: a plain dense float32 forward of the same model.

What a user gets by running the upstream non-fused code (`mmfreelm/ops/bitnet.py` BitLinear: RMSNorm,
per-token absmax activation quantization, `F.linear` with the dequantized ternary weight) on a CPU:
every BitLinear an `nn.Linear` holding `ternary * beta` in float32, four bytes per weight. It is kept
apart from `inspector/` on purpose and must not get faster when our code does; it shares nothing
with `inspector.lm.model` but the weights it is given.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from inspector.lm.model import HGRNBitForCausalLM


def _rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class DenseBitLinear(nn.Module):
    def __init__(self, ternary: torch.Tensor, beta: float, norm_weight: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(ternary.shape[1], ternary.shape[0], bias=False)
        self.linear.weight.data = ternary.to(torch.float32) * beta
        self.norm_weight = norm_weight.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _rmsnorm(x, self.norm_weight, 1e-6)
        scale = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp(min=1e-5)
        x = (x * scale).round().clamp(-128, 127) / scale
        return self.linear(x)


class DenseReferenceLM(nn.Module):
    """(input_ids, state) -> (logits, state), one recurrent state vector per layer, all float32."""

    def __init__(self, model: HGRNBitForCausalLM):
        super().__init__()
        self.config = model.config
        self.embeddings = model.model.embeddings.weight.detach().clone()
        self.bounds = model.model.layer_lower_bounds()
        self.eps = model.config.rms_norm_eps

        def dense(bitlinear) -> DenseBitLinear:
            return DenseBitLinear(bitlinear.ternary.values, bitlinear.ternary.beta, bitlinear.norm.weight)

        self.layers = []
        for block in model.model.layers:
            self.layers.append(
                {
                    "attn_norm": block.attn_norm.weight.detach().clone(),
                    "mlp_norm": block.mlp_norm.weight.detach().clone(),
                    "g_norm": block.attn.g_norm.weight.detach().clone(),
                    **{name: dense(getattr(block.attn, name)) for name in ("i_proj", "f_proj", "g_proj", "o_proj")},
                    **{name: dense(getattr(block.mlp, name)) for name in ("gate_proj", "down_proj")},
                }
            )
        self.norm = model.model.norm.weight.detach().clone()
        self.lm_head = dense(model.lm_head)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, state=None):
        x = self.embeddings[input_ids]
        new_state = []
        for k, layer in enumerate(self.layers):
            a = _rmsnorm(x, layer["attn_norm"], self.eps)
            i, f, g = layer["i_proj"](a), torch.sigmoid(layer["f_proj"](a)), layer["g_proj"](a)
            if self.bounds is not None and k > 0:
                f = self.bounds[k] + (1 - self.bounds[k]) * f
            i = F.silu(i) * (1 - f)
            h = state[k] if state is not None else torch.zeros_like(i[:, 0])
            outs = []
            for t in range(x.shape[1]):
                h = f[:, t] * h + i[:, t]
                outs.append(h)
            new_state.append(h)
            hs = torch.stack(outs, 1)
            x = x + layer["o_proj"](_rmsnorm(g, layer["g_norm"], self.eps) * F.silu(hs))
            m = _rmsnorm(x, layer["mlp_norm"], self.eps)
            gate, y = layer["gate_proj"](m).chunk(2, -1)
            x = x + layer["down_proj"](F.silu(gate) * y)
        return self.lm_head(_rmsnorm(x, self.norm, self.eps)), new_state
