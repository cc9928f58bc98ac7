"""The diff engine: float and integer models in lockstep on the same tokens, compared everywhere.

Per tensor and token: SQNR (dB), cosine similarity, max abs error, relative error (||f - q|| / ||f||).
Per token: KL(p_float || p_int) of the next-token distributions, top-1 agreement, and the rank of
the float model's top-1 token in the integer model's distribution. Per text: both perplexities.

Lockstep means both models read exactly the same token sequence: a fixed text (teacher forcing),
or the continuation one of the two models generated itself (`follow="float"` or `"integer"`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl
import torch

from inspector.emulator.engine import Emulator
from inspector.emulator.probes import RecordingProbe, split_site_key
from inspector.generate import SamplingSettings, encode_prompt, generate

@dataclass
class DiffResult:
    ids: list[int]
    tensors: pl.DataFrame  # token, layer, site, sqnr_db, cosine, max_abs_error, rel_error
    tokens: pl.DataFrame  # token, token_id, kl, top1_float, top1_int, agree, float_top1_rank_in_int, nll_float, nll_int
    perplexity_float: float
    perplexity_int: float
    float_values: dict[str, torch.Tensor]  # site -> (T, N) float model values
    int_probe: RecordingProbe  # the integer run's probe (dequantized values via site_values)
    float_logits: torch.Tensor  # (T, vocab)
    int_logits: torch.Tensor  # (T, vocab)

    def sites(self) -> list[str]:
        """Sites present in both models, in data-flow order."""
        return [k for k in self.float_values if k in self.int_probe.sites and self.int_probe.sites[k].values]

    def per_layer(self) -> pl.DataFrame:
        """Mean over tokens of each metric, per layer and site (the table the CLI prints)."""
        return (
            self.tensors.group_by(["layer", "site"], maintain_order=True)
            .agg(
                pl.col("sqnr_db").filter(pl.col("sqnr_db").is_finite()).mean().alias("sqnr_db"),
                pl.col("cosine").mean(),
                pl.col("max_abs_error").max(),
                pl.col("rel_error").mean(),
            )
            .sort(["layer"], maintain_order=True)
        )


def tensor_metrics(reference: torch.Tensor, test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row-wise metrics for (T, N) tensors: one value per token."""
    f, q = reference.double(), test.double()
    err = f - q
    signal, noise = (f * f).sum(-1), (err * err).sum(-1)
    sqnr = 10 * torch.log10(signal / noise)
    sqnr = torch.where(noise == 0, torch.full_like(sqnr, float("inf")), sqnr)
    cos = torch.nn.functional.cosine_similarity(f, q, dim=-1, eps=1e-30)
    return {
        "sqnr_db": sqnr,
        "cosine": cos,
        "max_abs_error": err.abs().amax(-1),
        "rel_error": noise.sqrt() / signal.sqrt().clamp(min=1e-30),
    }


def _float_sites(trace: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sites = {}
    for key, value in trace.items():
        value = value[0]
        if key.endswith("gate_proj"):
            gate, y = value.chunk(2, dim=-1)
            sites[key[: -len("gate_proj")] + "gate"] = gate
            sites[key[: -len("gate_proj")] + "y"] = y
        else:
            sites[key] = value
    return sites


def compare(emulator: Emulator, ids: list[int], integer_probe: RecordingProbe | None = None) -> DiffResult:
    """Run both models on `ids` and compute every metric.

    `integer_probe`: a probe (with tensors) that already saw the integer model read exactly `ids`,
    such as a generation run's; its logits and tensors are used instead of running the integer
    model again. They are the same bits either way: feeding a sequence at once or token by token
    gives identical integers and logits (tested), so this only saves the second run.
    """
    model = emulator.loaded.model
    trace: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        f_logits, _ = model(torch.tensor([ids]), None, trace)
    if integer_probe is not None and integer_probe.record_tensors and integer_probe.tokens() == len(ids):
        i_logits, probe = integer_probe.site_values("logits"), integer_probe
    else:
        i_logits, probe = emulator.teacher_forced(ids, record_tensors=True)
    f_logits = f_logits[0].double()
    i_logits = i_logits.double()

    float_values = _float_sites(trace)
    rows = []
    for key, f_value in float_values.items():
        if key not in probe.sites or not probe.sites[key].values:
            continue
        metrics = tensor_metrics(f_value, probe.site_values(key))
        layer, site = split_site_key(key)
        for token in range(len(ids)):
            rows.append({"token": token, "layer": layer, "site": site} | {k: float(v[token]) for k, v in metrics.items()})
    tensors = pl.DataFrame(rows)

    log_pf = torch.log_softmax(f_logits, -1)
    log_pi = torch.log_softmax(i_logits, -1)
    kl = (log_pf.exp() * (log_pf - log_pi)).sum(-1)
    top_f, top_i = f_logits.argmax(-1), i_logits.argmax(-1)
    rank = (i_logits > i_logits.gather(1, top_f[:, None])).sum(-1) + 1
    targets = torch.tensor(ids[1:] + [-1])
    valid = targets >= 0
    nll_f = torch.where(valid, -log_pf.gather(1, targets.clamp(min=0)[:, None])[:, 0], torch.nan)
    nll_i = torch.where(valid, -log_pi.gather(1, targets.clamp(min=0)[:, None])[:, 0], torch.nan)
    tokens = pl.DataFrame(
        {
            "token": list(range(len(ids))),
            "token_id": ids,
            "kl": kl.tolist(),
            "top1_float": top_f.tolist(),
            "top1_int": top_i.tolist(),
            "agree": (top_f == top_i).tolist(),
            "float_top1_rank_in_int": rank.tolist(),
            "nll_float": nll_f.tolist(),
            "nll_int": nll_i.tolist(),
        }
    )
    n = int(valid.sum())
    ppl_f = math.exp(float(nll_f[valid].sum()) / n) if n else float("nan")
    ppl_i = math.exp(float(nll_i[valid].sum()) / n) if n else float("nan")
    return DiffResult(ids, tensors, tokens, ppl_f, ppl_i, float_values, probe, f_logits, i_logits)


def lockstep_ids(emulator: Emulator, prompt: str, follow: str, sampling: SamplingSettings) -> list[int]:
    """The token sequence both models will read: the prompt plus one model's own continuation."""
    tokenizer = emulator.loaded.tokenizer
    if follow == "text":
        return encode_prompt(tokenizer, prompt)
    if follow == "float":
        step = emulator.loaded.model
    elif follow == "integer":
        step = emulator.step_fn(None)
    else:
        raise ValueError(f"follow must be 'text', 'float' or 'integer', got {follow!r}")
    generated = [t.token_id for t in generate(step, tokenizer, prompt, **vars(sampling))]
    return encode_prompt(tokenizer, prompt) + generated


def sqnr_table(result: DiffResult) -> pl.DataFrame:
    """Per-layer SQNR of the main sites, wide: one row per layer (for the README and the CLI)."""
    sites = ["attn_norm", "hidden", "o_proj", "residual_attn", "down_proj", "residual_mlp"]
    table = result.per_layer().filter(pl.col("site").is_in(sites)).pivot(on="site", index="layer", values="sqnr_db")
    return table.select(["layer", *[s for s in sites if s in table.columns]])
