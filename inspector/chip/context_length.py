"""Tokens/s and energy per token against context length: our estimate (flat) beside a transformer on a GPU.

The MatMul-free model keeps a fixed-size recurrent state, so its cost per generated token does not
depend on the context. A transformer reads its weights and its whole KV cache for every generated
token; at batch 1 that is memory-bound, so its time per token is at best

    (parameters x bytes per value + 2 x layers x KV width x bytes per value x context) / memory bandwidth

(a roofline: a real run reaches a share of the bandwidth, `bandwidth_share`), and its energy per
token is power x that time. Defaults: Qwen2.5-0.5B in FP16 on a Jetson Orin Nano 8GB, each with its
source in `TRANSFORMER_SOURCES` ("assumed" where it is our choice).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from inspector.errors import InspectorError

CONTEXTS = (500, 1000, 2000, 4000, 8000, 16000)  # the paper's range: 500 to 16k tokens


class ContextError(InspectorError):
    pass


@dataclass(frozen=True)
class TransformerBaseline:
    parameters: float = 494e6
    layers: int = 24
    kv_width: int = 128  # K (or V) values per token and layer: KV heads x head dim
    bytes_per_value: float = 2.0
    bandwidth_gb_s: float = 68.0
    watts: float = 15.0
    bandwidth_share: float = 1.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            label = TRANSFORMER_LABELS[field.name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ContextError(f"{label} must be a positive number, got {value!r}")
            if value > TRANSFORMER_LIMITS[field.name]:
                raise ContextError(f"{label} = {value:g} is absurd (over {TRANSFORMER_LIMITS[field.name]:g})")

    def kv_bytes_per_context_token(self) -> float:
        return 2 * self.layers * self.kv_width * self.bytes_per_value

    def seconds_per_token(self, context: np.ndarray) -> np.ndarray:
        read = self.parameters * self.bytes_per_value + self.kv_bytes_per_context_token() * np.asarray(context, dtype=float)
        return read / (self.bandwidth_gb_s * 1e9 * self.bandwidth_share)

    def crossover(self, seconds: float) -> float | None:
        """The context at which the transformer's time per token reaches `seconds` (None if it starts slower)."""
        weights = self.parameters * self.bytes_per_value
        context = (seconds * self.bandwidth_gb_s * 1e9 * self.bandwidth_share - weights) / self.kv_bytes_per_context_token()
        return context if context > 0 else None


TRANSFORMER_LABELS = {
    "parameters": "parameters",
    "layers": "layers",
    "kv_width": "KV width (KV heads x head dim)",
    "bytes_per_value": "bytes per value",
    "bandwidth_gb_s": "memory bandwidth (GB/s)",
    "watts": "power (W)",
    "bandwidth_share": "share of the bandwidth reached",
}
TRANSFORMER_LIMITS = {
    "parameters": 1e13, "layers": 10_000, "kv_width": 1e6, "bytes_per_value": 16, "bandwidth_gb_s": 1e5, "watts": 1e5,
    "bandwidth_share": 1.0,
}
TRANSFORMER_SOURCES = {
    "parameters": "Qwen2.5-0.5B model card (Qwen, Hugging Face): 0.49 B parameters",
    "layers": "Qwen2.5-0.5B config.json: num_hidden_layers 24",
    "kv_width": "Qwen2.5-0.5B config.json: 2 KV heads x head dim 64 (hidden 896 / 14 heads)",
    "bytes_per_value": "FP16, as the paper ran the Jetson transformers",
    "bandwidth_gb_s": "NVIDIA Jetson Orin Nano 8GB module data sheet: 68 GB/s LPDDR5",
    "watts": "assumed: the 15 W power mode (NVIDIA's Jetson Orin Nano 8GB modes are 7 W and 15 W); the paper measured "
    "system power but its mode is not in the reported figures",
    "bandwidth_share": "assumed: 1 (a roofline, the best the GPU could do); the paper's measured Jetson points lie below it",
}


def context_table(
    ours_tokens_per_s: float, ours_mj: float, gpu: TransformerBaseline, contexts: tuple[int, ...] | list[int] = CONTEXTS,
) -> pl.DataFrame:
    """context, who, tokens/s, mJ/token: ours flat, the transformer growing with its KV cache."""
    if not ours_tokens_per_s > 0 or not ours_mj > 0:
        raise ContextError("our estimate needs positive tokens/s and energy per token")
    ctx = np.asarray(sorted(contexts), dtype=np.int64)
    if ctx.size == 0 or ctx[0] < 1:
        raise ContextError("context lengths must be positive numbers of tokens")
    seconds = gpu.seconds_per_token(ctx)
    return pl.concat(
        [
            pl.DataFrame({"context_tokens": ctx, "system": "Loihi 2 (our estimate)",
                          "tokens_per_s": np.full(ctx.size, float(ours_tokens_per_s)),
                          "mj_per_token": np.full(ctx.size, float(ours_mj))}),
            pl.DataFrame({"context_tokens": ctx, "system": "transformer on the GPU (KV-cache roofline)",
                          "tokens_per_s": 1 / seconds, "mj_per_token": gpu.watts * seconds * 1e3}),
        ]
    )


def crossovers(ours_tokens_per_s: float, ours_mj: float, gpu: TransformerBaseline) -> dict[str, float | None]:
    """Context lengths where the transformer's tokens/s falls to ours and its energy per token rises to ours."""
    return {
        "tokens_per_s": gpu.crossover(1 / ours_tokens_per_s),
        "mj_per_token": gpu.crossover(ours_mj * 1e-3 / gpu.watts),
    }
