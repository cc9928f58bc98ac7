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

import numpy as np
import polars as pl
import torch

from inspector import schema as S
from inspector.backends.base import BackendBase
from inspector.chip.probes import RecordingProbe
from inspector.lm.generate import GeneratedToken, SamplingSettings, encode_prompt, generate

# Tokens per forward call of the comparison: bounds the float trace and the logits held at once.
CHUNK_TOKENS = 256


@dataclass
class DiffResult:
    """Both models on the same tokens. Per-token tables cover every token; per-neuron data
    (float_values, the integer probe's values, logits) covers the window from `window_start` on."""

    ids: list[int]
    tensors: pl.DataFrame  # token, layer, site, sqnr_db, cosine, max_abs_error, rel_error, underflow, values
    tokens: pl.DataFrame  # token, token_id, kl, top1_float, top1_int, agree, float_top1_rank_in_int, nll_float, nll_int
    perplexity_float: float
    perplexity_int: float
    float_values: dict[str, torch.Tensor]  # site -> (T_window, N) float model values
    int_probe: RecordingProbe  # the integer run's probe (dequantized values via site_values)
    float_logits: torch.Tensor  # (T_window, vocab)
    int_logits: torch.Tensor  # (T_window, vocab)
    window_start: int = 0

    def sites(self) -> list[str]:
        """Sites present in both models, in data-flow order."""
        return [k for k in self.float_values if self.int_probe.has_values(k)]

    def in_window(self, token: int) -> bool:
        return self.window_start <= token < self.window_start + self.float_logits.shape[0]

    def logits_at(self, token: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Both models' logits at `token` (counted from the start of the prompt); must be in the window."""
        if not self.in_window(token):
            raise IndexError(f"token {token} is outside the per-neuron window (tokens {self.window_start}..{len(self.ids) - 1})")
        return self.float_logits[token - self.window_start], self.int_logits[token - self.window_start]

    def per_layer(self) -> pl.DataFrame:
        """Mean over tokens of each metric, per layer and site (the table the CLI prints)."""
        return (
            self.tensors.group_by(["layer", "site"], maintain_order=True)
            .agg(
                pl.col("sqnr_db").filter(pl.col("sqnr_db").is_finite()).mean().alias("sqnr_db"),
                pl.col("cosine").mean(),
                pl.col("max_abs_error").max(),
                pl.col("rel_error").mean(),
                (pl.col("underflow").sum() / pl.col("values").sum()).alias("underflow_rate"),
            )
            .sort(["layer"], maintain_order=True)
        )

    def nbytes(self) -> int:
        held = sum(v.nbytes for v in self.float_values.values()) + self.float_logits.nbytes + self.int_logits.nbytes
        return held + int(self.tensors.estimated_size() + self.tokens.estimated_size())


def tensor_metrics(reference: torch.Tensor, test: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row-wise metrics for (T, N) tensors: one value per token.

    `underflow` counts values the float model has nonzero and the integer model rounds to 0: the
    register's resolution is too coarse for them (the opposite end of the range from clipping).
    """
    f, q = reference.double(), test.double()
    err = f - q
    signal, noise = (f * f).sum(-1), (err * err).sum(-1)
    sqnr = 10 * torch.log10(signal / noise)
    sqnr = torch.where(noise == 0, torch.full_like(sqnr, float("inf")), sqnr)
    cos = torch.nn.functional.cosine_similarity(f, q, dim=-1, eps=1e-30)
    return {
        "sqnr_db": sqnr,
        "cosine": cos,
        "max_abs_error": _row_abs_max(err),
        "rel_error": noise.sqrt() / signal.sqrt().clamp(min=1e-30),
        "underflow": ((f != 0) & (q == 0)).sum(-1),
    }


def _row_abs_max(values: torch.Tensor) -> torch.Tensor:
    """max|x| of each row, exactly `values.abs().amax(-1)` (NaN kept): the larger of -min and max, from one
    pass without an |x| copy of the (T, N) float64 error."""
    lowest, highest = torch.aminmax(values, dim=-1)
    return torch.maximum(-lowest, highest).abs_()  # abs_: +0.0 for a row of zeros, a NaN's sign bit cleared, as abs() does


class _MetricRows:
    """The per-token, per-site metric rows of a comparison, gathered as tensors and made into one table at the
    end (a DataFrame per site and chunk, hundreds of them for a large model, cost more than the metrics)."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, int, str, int, int, dict[str, torch.Tensor]]] = []

    def add(self, key: str, f_value: torch.Tensor, i_value: torch.Tensor, first_token: int) -> None:
        layer, site = S.split_site_key(key)
        self.parts.append((first_token, layer, site, f_value.shape[0], f_value.shape[1], tensor_metrics(f_value, i_value)))

    def frame(self) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame()
        counts = np.array([part[3] for part in self.parts])
        columns: dict[str, object] = {
            "token": np.concatenate([np.arange(first, first + n, dtype=np.int64) for first, _, _, n, _, _ in self.parts]),
            "layer": np.repeat(np.array([part[1] for part in self.parts], dtype=np.int64), counts),
            "site": pl.Series("site", [part[2] for part in self.parts], dtype=pl.String).gather(
                np.repeat(np.arange(len(self.parts)), counts)
            ),
        }
        for name in self.parts[0][5]:
            values = torch.cat([part[5][name] for part in self.parts]).numpy()
            columns[name] = values.astype(np.int64) if name == "underflow" else values.astype(np.float64)
        columns["values"] = np.repeat(np.array([part[4] for part in self.parts], dtype=np.int64), counts)
        return pl.DataFrame(columns).sort(["token"], maintain_order=True)


@torch.no_grad()
def compare(
    backend: BackendBase,
    ids: list[int],
    integer_probe: RecordingProbe | None = None,
    keep_from: int = 0,
    chunk_tokens: int = CHUNK_TOKENS,
) -> DiffResult:
    """Run both models on `ids` and compute every metric.

    Both models read the sequence in chunks of `chunk_tokens`, carrying their recurrent state, so
    the float trace and the logits of a long text are never held all at once; per-token metrics
    are kept for every token, per-neuron values and logits only from `keep_from` on.

    `integer_probe`: a probe that already saw the integer model read exactly `ids` and kept values
    from `keep_from` on (a generation run with the same window); its values are used instead of
    running the integer model again over the window, and it becomes the result's `int_probe`. They
    are the same bits either way: feeding a sequence at once or token by token gives identical
    integers and logits (tested). Tokens before the window are read again, chunk by chunk.

    Teacher-forced reads go through `backend.integer`, the emulator's arithmetic, on every backend:
    the backends compute the same integers (tests/test_lava_backend.py checks).

    A probe whose window starts before `keep_from` (the CLI's run, which keeps every token, compared
    for its per-token metrics only) is read the same way from its own window start on, so the integer
    model does not run again at all; it is then the result's `int_probe` with that wider window
    (`int_probe.window_start` <= `window_start`). Chunk boundaries, hence every float bit, are those of
    a comparison without it.
    """
    model = backend.loaded.model
    keep_from = min(max(keep_from, 0), max(len(ids) - 1, 0))
    reuse = (
        integer_probe is not None and integer_probe.record_tensors and integer_probe.tokens() == len(ids)
        and integer_probe.window_start <= keep_from
    )
    probe = integer_probe if reuse else backend.new_probe(record_tensors=True, keep_from=keep_from)
    read_from = probe.window_start if reuse else len(ids)  # chunks from this token on are read from the probe
    # Tokens before the window: a reused probe kept no values there, so the integer model reads
    # them again, through a probe that keeps nothing but the current chunk.
    forced = RecordingProbe(backend.core_map, record_tensors=False, keep_from=len(ids), summaries=False) if reuse else probe
    f_state = i_state = None
    rows = _MetricRows()
    kept_float: dict[str, list[torch.Tensor]] = {}
    kept_logits: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    per_token: dict[str, list[torch.Tensor]] = {name: [] for name in ("kl", "top_f", "top_i", "rank", "nll_f", "nll_i")}
    all_ids = torch.tensor(ids)
    window_values: dict[str, torch.Tensor] | None = None
    # no chunk straddles the window's start
    starts = [*range(0, keep_from, chunk_tokens), *range(keep_from, len(ids), chunk_tokens)]
    for start, stop in zip(starts, [*starts[1:], len(ids)], strict=True):
        chunk = all_ids[start:stop][None]
        trace: dict[str, torch.Tensor] = {}
        f_logits, f_state = model(chunk, f_state, trace)
        if start >= read_from:
            if window_values is None:  # dequantized once from the kept codes, sliced per chunk
                window_values = {key: probe.site_values(key) for key in probe.sites if probe.has_values(key)}
            i_values = {key: values[start - read_from : stop - read_from] for key, values in window_values.items()}
        else:
            forced.chunk_values = {}
            _, i_state = backend.integer(chunk, i_state, forced)
            i_values, forced.chunk_values = forced.chunk_values, None
        float_values = {key: value[0] for key, value in trace.items()}
        del trace
        for key, f_value in float_values.items():
            if key in i_values and key != S.LOGITS:
                rows.add(key, f_value, i_values[key], start)
        skip = min(max(keep_from - start, 0), stop - start)
        if skip < stop - start:
            for key, value in float_values.items():
                if key != S.LOGITS and key in i_values:
                    kept_float.setdefault(key, []).append(value[skip:].clone())
        f_chunk, i_chunk = f_logits[0].double(), i_values[S.LOGITS].double()
        if skip < stop - start:
            kept_logits[0].append(f_chunk[skip:].clone())  # copies: views would keep whole chunks alive
            kept_logits[1].append(i_chunk[skip:].clone())
        log_pf, log_pi = torch.log_softmax(f_chunk, -1), torch.log_softmax(i_chunk, -1)
        top_f, top_i = f_chunk.argmax(-1), i_chunk.argmax(-1)
        targets = torch.cat([all_ids[start + 1 : stop + 1], torch.full((max(stop + 1 - len(ids), 0),), -1)])[: stop - start]
        valid = targets >= 0
        per_token["kl"].append((log_pf.exp() * (log_pf - log_pi)).sum(-1))
        per_token["top_f"].append(top_f)
        per_token["top_i"].append(top_i)
        per_token["rank"].append((i_chunk > i_chunk.gather(1, top_f[:, None])).sum(-1) + 1)
        per_token["nll_f"].append(torch.where(valid, -log_pf.gather(1, targets.clamp(min=0)[:, None])[:, 0], torch.nan))
        per_token["nll_i"].append(torch.where(valid, -log_pi.gather(1, targets.clamp(min=0)[:, None])[:, 0], torch.nan))
    cat = {name: torch.cat(parts) for name, parts in per_token.items()}
    tensors = rows.frame()
    tokens = pl.DataFrame(
        {
            "token": list(range(len(ids))),
            "token_id": ids,
            "kl": cat["kl"].tolist(),
            "top1_float": cat["top_f"].tolist(),
            "top1_int": cat["top_i"].tolist(),
            "agree": (cat["top_f"] == cat["top_i"]).tolist(),
            "float_top1_rank_in_int": cat["rank"].tolist(),
            "nll_float": cat["nll_f"].tolist(),
            "nll_int": cat["nll_i"].tolist(),
        }
    )
    valid = ~torch.isnan(cat["nll_f"])
    n = int(valid.sum())
    ppl_f = math.exp(float(cat["nll_f"][valid].sum()) / n) if n else float("nan")
    ppl_i = math.exp(float(cat["nll_i"][valid].sum()) / n) if n else float("nan")
    float_values = {key: torch.cat(parts) for key, parts in kept_float.items()}
    f_logits, i_logits = (torch.cat(parts) if parts else torch.empty(0, 0, dtype=torch.float64) for parts in kept_logits)
    return DiffResult(ids, tensors, tokens, ppl_f, ppl_i, float_values, probe, f_logits, i_logits, keep_from)


def lockstep_ids(backend: BackendBase, prompt: str, follow: str, sampling: SamplingSettings) -> list[int]:
    """The token sequence both models will read: the prompt plus one model's own continuation."""
    return lockstep_sequence(backend, prompt, follow, sampling)[0]


def lockstep_sequence(
    backend: BackendBase, prompt: str, follow: str, sampling: SamplingSettings,
) -> tuple[list[int], list[GeneratedToken]]:
    """`lockstep_ids`, with the generated tokens themselves (whether the continuation stopped at EOS)."""
    tokenizer = backend.loaded.tokenizer
    if follow == "text":
        return encode_prompt(tokenizer, prompt), []
    if follow == "float":
        step = backend.loaded.model
    elif follow == "integer":
        step = backend.step_fn(None)
    else:
        raise ValueError(f"follow must be 'text', 'float' or 'integer', got {follow!r}")
    eos = backend.loaded.eos_token_ids
    generated = list(generate(step, tokenizer, prompt, **vars(sampling), eos_token_ids=eos))
    return encode_prompt(tokenizer, prompt) + [t.token_id for t in generated], generated


def sqnr_table(result: DiffResult) -> pl.DataFrame:
    """Per-layer SQNR of the main sites, wide: one row per layer (for docs/integer-model.md and the CLI)."""
    sites = list(S.DEPTH_SITES)
    table = result.per_layer().filter(pl.col("site").is_in(sites)).pivot(on="site", index="layer", values="sqnr_db")
    return table.select(["layer", *[s for s in sites if s in table.columns]])
