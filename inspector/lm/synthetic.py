"""Random-weight models of the published configurations, built directly in inference form.

Why: the published MMfreeLM sizes cannot be downloaded here, yet their speed, memory and chip cost
must be measured. Building them through the trainable model would allocate a float32 latent weight
per ternary weight (10.8 GB for 2.7B) only to throw it away; this builds each BitLinear's int8 ternary
matrix directly (a third of the weights zero, as absmean quantization of Gaussian weights gives about
31%), with float32 embeddings and norm gains, one tensor at a time.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.lm.model import HGRNBitForCausalLM
from inspector.lm.ternary import TernaryMatrix

ZERO_SHARE = 0.31  # share of zero ternary weights for absmean-quantized Gaussian weights


def published_config(name: str) -> HGRNBitConfig:
    return HGRNBitConfig(**PUBLISHED_CONFIGS[name])


def random_ternary(out_features: int, in_features: int, generator: torch.Generator, beta: float) -> TernaryMatrix:
    draw = torch.rand(out_features, in_features, generator=generator)
    values = torch.where(draw < ZERO_SHARE, 0, torch.where(draw < (1 + ZERO_SHARE) / 2, -1, 1)).to(torch.int8)
    return TernaryMatrix(values, beta)


def random_frozen_model(
    config: HGRNBitConfig, seed: int = 0, on_progress: Optional[Callable[[int, int], None]] = None
) -> HGRNBitForCausalLM:
    """A frozen HGRNBit model with random weights of trained-like magnitudes (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = HGRNBitForCausalLM(config, initialize=False)
    bitlinears = model.bitlinears()
    for done, (_, module) in enumerate(bitlinears):
        module.freeze(random_ternary(module.out_features, module.in_features, generator, beta=0.02))
        if on_progress is not None:
            on_progress(done + 1, len(bitlinears))
    for name, param in list(model.named_parameters()):
        owner, _, attr = name.rpartition(".")
        if name.endswith("norm.weight"):
            value = 1 + 0.1 * torch.randn(param.shape, generator=generator)
        elif name == "model.lower_bounds":
            value = torch.randn(param.shape, generator=generator)
        else:  # the embedding
            value = torch.randn(param.shape, generator=generator) * 0.5
        setattr(model.get_submodule(owner), attr, torch.nn.Parameter(value, requires_grad=False))
    return model.freeze()
