"""Calibration: the largest magnitude each quantization site sees on some text (min/max observer).

Why max and not a percentile: the paper's study uses min/max observers, and a scale that covers the
observed range keeps saturation an exception worth showing, not the norm.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer

from inspector.model import BitLinear, HGRNBitForCausalLM, RMSNorm
from inspector.tokenizer import encode

CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "data" / "calibration.txt"


def default_calibration_text() -> str:
    return CALIBRATION_TEXT.read_text(encoding="utf-8")


@torch.no_grad()
def calibrate(model: HGRNBitForCausalLM, tokenizer: Tokenizer, text: str, max_tokens: int) -> dict[str, float]:
    """max|x| per site: every traced stage, every RMSNorm output and every BitLinear output."""
    ids = encode(tokenizer, text)[:max_tokens]
    if len(ids) < 2:
        raise ValueError("calibration text is too short for this tokenizer")
    maxima: dict[str, float] = {}

    def observe(name: str, value: torch.Tensor) -> None:
        maxima[name] = max(maxima.get(name, 0.0), float(value.detach().abs().max()))

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (RMSNorm, BitLinear)):
            handles.append(module.register_forward_hook(lambda mod, args, out, name=name: observe(name, out)))
    try:
        state = None
        for start in range(0, len(ids), 256):
            trace: dict[str, torch.Tensor] = {}
            _, state = model(torch.tensor([ids[start : start + 256]]), state, trace)
            for key, value in trace.items():
                if key.endswith("gate_proj"):
                    gate, y = value.chunk(2, dim=-1)
                    observe(key + ".gate", gate)
                    observe(key + ".y", y)
                else:
                    observe(key, value)
    finally:
        for handle in handles:
            handle.remove()
    return maxima
