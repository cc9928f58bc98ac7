"""Calibration: the largest magnitude each quantization site sees on some text (min/max observer).

Why max and not a percentile: the paper's study uses min/max observers, and a scale that covers the
observed range keeps saturation an exception worth showing, not the norm.

Why float64, one layer at a time: every integer of the integer model is derived from these maxima,
so they must not depend on the machine. A float32 forward pass sums in an order that depends on the
number of threads and the BLAS kernel; that moves a maximum by an ulp, which moves a 16-bit
requantization multiplier now and then, and with it whole generations. In float64 the same
differences are about 1e-16 relative, and each maximum is then rounded to float32, so the result is
the same on every machine and thread count (tested with 1 and 2 threads). Only one block at a time is
held in float64, so calibration needs one block's worth of extra memory, not a second model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from tokenizers import Tokenizer

from inspector import schema as S
from inspector.lm.model import BitLinear, HGRNBitForCausalLM, RMSNorm
from inspector.lm.tokenizer import encode_document
from inspector.quant.calibration_cache import calibration_key, calibration_settings, load_calibration, save_calibration
from inspector.quant.config import QuantConfig

CALIBRATION_TEXT = Path(__file__).resolve().parents[1] / "data" / "calibration.txt"
CHUNK = 256  # tokens per forward call; the recurrent state carries across chunks


def default_calibration_text() -> str:
    return CALIBRATION_TEXT.read_text(encoding="utf-8")


def observe(maxima: dict[str, float], name: str, value: torch.Tensor) -> None:
    """Keep the running max|x| of one site, rounded to float32 (see the module docstring)."""
    peak = float(np.float32(float(_abs_max(value.detach()))))
    maxima[name] = max(maxima.get(name, 0.0), peak)


def _abs_max(value: torch.Tensor) -> torch.Tensor:
    """max|x|, exactly `value.abs().max()`: the larger of -min and max, from one pass without an |x| copy.

    A float's |x| is exact, so the largest |x| is -min or max; `torch.maximum` keeps a NaN as `max` does.
    """
    if not value.is_floating_point():
        return value.abs().max()
    lo, hi = torch.aminmax(value)
    return torch.maximum(-lo, hi).abs_()  # abs_: +0.0 for all zeros, a NaN's sign bit cleared, as abs() does


def observe_trace(maxima: dict[str, float], trace: dict[str, torch.Tensor]) -> None:
    """Every traced site of a forward pass. The GLU's halves (sites `gate`, `y`) are kept as
    `{layer}.gate_proj.gate` and `.y`, the names the conversion reads them under."""
    for key, value in trace.items():
        layer, site = S.split_site_key(key)
        if site in (S.GATE_HALF, S.Y):
            key = S.layer_key(layer, f"{S.GATE_PROJ}.{site}")
        observe(maxima, key, value)


def observe_modules(root: torch.nn.Module, prefix: str, maxima: dict[str, float]) -> list:
    """Hooks that observe every RMSNorm and BitLinear output under `root` (names get `prefix`).

    Returns the hook handles; the caller removes them. Separate from `calibrate` so that one layer
    can be calibrated on its own under the names the whole model would give it.
    """
    handles = []
    for name, module in root.named_modules():
        if isinstance(module, (RMSNorm, BitLinear)):
            key = (prefix + name).rstrip(".")
            handles.append(module.register_forward_hook(lambda mod, args, out, key=key: observe(maxima, key, out)))
    return handles


@torch.no_grad()
def calibrate(
    model: HGRNBitForCausalLM,
    tokenizer: Tokenizer,
    text: str,
    max_tokens: int,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> dict[str, float]:
    """max|x| per site: every traced stage, every RMSNorm output and every BitLinear output.

    The text is encoded as a document (with the checkpoint's BOS, if it uses one), as the model saw
    text in training. The LM head runs on the host in float and is not calibrated.
    """
    ids = encode_document(tokenizer, text)[:max_tokens]
    if len(ids) < 2:
        raise ValueError("calibration text is too short for this tokenizer")
    maxima: dict[str, float] = {}
    x = model.model.embeddings(torch.tensor([ids])).double()
    observe(maxima, S.EMBEDDINGS, x)
    bounds = None
    if model.config.use_lower_bound:
        probs = model.model.lower_bounds.detach().double().softmax(dim=0)
        bounds = probs.cumsum(dim=0) - probs[0]
    for idx, layer in enumerate(model.model.layers):
        block = copy.deepcopy(layer).double()
        handles = observe_modules(block, f"model.layers.{idx}.", maxima)
        try:
            state, outputs = None, []
            for start in range(0, x.shape[1], CHUNK):
                trace: dict[str, torch.Tensor] = {}
                bound = bounds[idx] if bounds is not None else None
                out, state = block(x[:, start : start + CHUNK], bound, state, trace, S.layer_key(idx, ""))
                observe_trace(maxima, trace)
                outputs.append(out)
            x = torch.cat(outputs, dim=1)
        finally:
            for handle in handles:
                handle.remove()
        del block
        if on_progress is not None:
            on_progress(idx + 1, len(model.model.layers))
    final_norm = copy.deepcopy(model.model.norm).double()
    normed = final_norm(x)
    observe(maxima, "model.norm", normed)
    observe(maxima, S.FINAL_NORM, normed)
    return maxima


def calibrate_for(
    loaded, qc: QuantConfig, text: str, on_progress: Optional[Callable[[int, int], None]] = None,
    note: Optional[Callable[[str], None]] = None,
) -> tuple[dict[str, float], bool]:
    """`calibrate` with the settings of `qc`, through the on-disk cache when the model came from files:
    (maxima, loaded from the cache). `note(text)` hears about a cache file that was ignored."""
    settings = calibration_settings(qc)
    digest = loaded.weights_digest.hexdigest() if getattr(loaded, "weights_digest", None) is not None else None
    key = None
    if digest is not None:
        key = calibration_key(digest, loaded.config.to_dict(), loaded.tokenizer.to_str(), qc, text)
        cached = load_calibration(key, note or (lambda _text: None))
        if cached is not None:
            return cached, True
    maxima = calibrate(loaded.model, loaded.tokenizer, text, settings["calibration_tokens"], on_progress)
    if key is not None and save_calibration(key, maxima) is None and note is not None:
        note("the calibration cache could not be written (the next run calibrates again)")
    return maxima, False
