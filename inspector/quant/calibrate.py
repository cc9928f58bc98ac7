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

CHUNK = 256  # tokens per forward pass while calibrating (the state carries over)
CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "data" / "calibration.txt"


def default_calibration_text() -> str:
    return CALIBRATION_TEXT.read_text(encoding="utf-8")


def observe(maxima: dict[str, float], name: str, value: torch.Tensor) -> None:
    """Keep the running max|x| of one site."""
    maxima[name] = max(maxima.get(name, 0.0), float(value.detach().abs().max()))


def observe_trace(maxima: dict[str, float], trace: dict[str, torch.Tensor]) -> None:
    """Every traced stage of a forward pass; the GLU's gate_proj output is two sites (gate, y)."""
    for key, value in trace.items():
        if key.endswith("gate_proj"):
            gate, y = value.chunk(2, dim=-1)
            observe(maxima, key + ".gate", gate)
            observe(maxima, key + ".y", y)
        else:
            observe(maxima, key, value)


def observe_modules(root: torch.nn.Module, prefix: str, maxima: dict[str, float]) -> list:
    """Hooks that observe every RMSNorm and BitLinear output under `root` (names get `prefix`).

    Returns the hook handles; the caller removes them. Separate from `calibrate` so that one layer
    can be calibrated on its own under the names the whole model would give it.
    """
    handles = []
    for name, module in root.named_modules():
        if isinstance(module, (RMSNorm, BitLinear)):
            key = prefix + name
            handles.append(module.register_forward_hook(lambda mod, args, out, key=key: observe(maxima, key, out)))
    return handles


@torch.no_grad()
def calibrate(model: HGRNBitForCausalLM, tokenizer: Tokenizer, text: str, max_tokens: int) -> dict[str, float]:
    """max|x| per site: every traced stage, every RMSNorm output and every BitLinear output."""
    ids = encode(tokenizer, text)[:max_tokens]
    if len(ids) < 2:
        raise ValueError("calibration text is too short for this tokenizer")
    maxima: dict[str, float] = {}
    handles = observe_modules(model, "", maxima)
    try:
        state = None
        for start in range(0, len(ids), CHUNK):
            trace: dict[str, torch.Tensor] = {}
            _, state = model(torch.tensor([ids[start : start + CHUNK]]), state, trace)
            observe_trace(maxima, trace)
    finally:
        for handle in handles:
            handle.remove()
    return maxima
