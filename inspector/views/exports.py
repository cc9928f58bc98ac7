"""Exports that stand alone: tables, a column dictionary, run metadata and self-contained figures.

Conventions every exported table follows (issue 11, point 7):
- `token` is the one join key: a token's index counted from the start of the sequence the model
  read, prompt included (the first prompt token is 0, generated tokens continue the count). A
  special token the tokenizer adds (a BOS) is counted like any other.
- `token_metrics` row t describes the next-token distributions computed after reading token t,
  i.e. the prediction of token t + 1 (`predicts_token`).
- Column names have no spaces; units are in the name where a number has one (`kl_nats`, `sqnr_db`)
  and in the column dictionary for all of them.
- Every file carries the run's metadata: CSV as `#` comment lines before the header (read with
  `polars.read_csv(..., comment_prefix="#")`), Parquet in the file's key-value metadata under
  `inspector_run`, HTML figures inside the page, and the bundle as `run.json`.
- HTML figures embed plotly.js: they draw offline, with no CDN.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import io
import json
import zipfile
from typing import Any, Mapping

import plotly.graph_objects as go
import plotly.offline
import polars as pl
from tokenizers import Tokenizer

from inspector import schema as S
from inspector.compare.analysis import Analysis
from inspector.lm.generate import token_table
from inspector.schema import DEPTH_SITES

TOKEN_KEY = "`token`: index from the start of the sequence the model read (prompt included, 0-based); the join key of every table"
PARQUET_METADATA_KEY = "inspector_run"
BIG_TABLES = ("tensors",)  # exported as Parquet only: as CSV they run to tens of megabytes

# One meaning per column name across all tables: (unit, description). "" = no unit.
COLUMNS: dict[str, tuple[str, str]] = {
    "token": ("", TOKEN_KEY),
    "token_id": ("", "the token's id in the tokenizer's vocabulary"),
    "piece": ("", "the raw vocabulary entry of the token (byte-level BPE writes a leading space as 'Ġ', a newline as 'Ċ'; "
    "SentencePiece a space as '▁')"),
    "text": ("", "the text the token adds to the decoded sequence, in context (a leading space kept; '' inside a multi-byte "
    "character, which its last token carries)"),
    "is_prompt": ("", "true for tokens of the prompt, false for generated ones"),
    "is_special": ("", "true for the tokenizer's special tokens (such as a beginning-of-sequence token)"),
    "probability": ("probability", "the integer model's untempered probability of this token when it was generated"),
    "rank": ("", "rank of this token in the integer model's distribution (1 = its top-1)"),
    "top_alternatives": ("probability", "the integer model's five most likely tokens at that step, with probabilities"),
    "predicts_token": ("", "the token this row's distributions predict: token + 1 (null after the last token)"),
    "next_token_id": ("", "id of the token that actually followed (null after the last token)"),
    "kl_nats": ("nats", "KL(float || integer) of the next-token distributions computed after reading this token"),
    "top1_float": ("", "token id the float model ranks first for the next token"),
    "top1_int": ("", "token id the integer model ranks first for the next token"),
    "same_top1": ("", "true when both models rank the same next token first"),
    "float_top1_rank_in_int": ("", "rank of the float model's top-1 token in the integer model's distribution"),
    "nll_float_nats": ("nats", "negative log-likelihood of the actual next token under the float model"),
    "nll_int_nats": ("nats", "negative log-likelihood of the actual next token under the integer model"),
    "layer": ("", "layer index; -1 for sites outside the layer stack (embeddings, final norm, LM head)"),
    "site": ("", "where in the layer the value was probed (e.g. hidden = MLGRU state, residual_mlp = residual after the MLP)"),
    "kind": ("", "register kind of the site: state, activation, gate or accumulator"),
    "sqnr_db": ("dB", "signal-to-quantization-noise ratio: 10 log10(sum f^2 / sum (f - q)^2), float f vs dequantized integer q; "
    "higher is better, about 6 dB per bit"),
    "cosine": ("", "cosine similarity of the float and the dequantized integer vectors"),
    "max_abs_error": ("value units", "largest |float - integer| over the neurons of the site"),
    "rel_error": ("", "||float - integer|| / ||float|| over the neurons of the site"),
    "core": ("", "neuro-core index in the core map"),
    "chip": ("", "Loihi 2 chip index the core is on"),
    "group": ("", f"fused neuron group the core belongs to ({', '.join((*S.GROUP_ORDER, S.FINAL_GROUP.name))})"),
    "messages": ("messages", "graded spikes sent by the core's neurons in this token's time step; a neuron sends one per nonzero "
    "output per destination group, so a norm neuron feeding the i, f and g projections can send three"),
    "active_neurons": ("neurons", "neurons of the core that sent at least one message"),
    "messaging": ("", "how the group's neurons send: dense (every nonzero code), delta vth=N (sigma-delta: only changes of at "
    "least N codes) or threshold vth=N (only codes of at least N); dense outside the layers (final norm)"),
    "synops": ("synaptic operations", "synaptic operations: one per message per stored (nonzero) synapse it reaches"),
    "neuron_updates": ("updates", "neuron state updates (every neuron of the core updates once per time step)"),
    "neurons": ("neurons", "neurons mapped to the core"),
    "clipped": ("values", "values that fell outside the register range and were saturated"),
    "values": ("values", "values computed at the site for this token"),
    "rate": ("share", "clipped / values"),
    "neuron": ("", "neuron index within the site"),
    "code": ("integer code", "the integer held in the register (dequantized value = code x scale)"),
    "value": ("value units", "dequantized integer value (code x scale)"),
    "start": ("", "first neuron of the group on this core"),
    "end": ("", "one past the last neuron of the group on this core"),
    "synapses": ("synapses", "stored (nonzero ternary) synapses on the core"),
    "memory_bytes": ("bytes", "synapse and neuron-state memory the core needs"),
    "times_clipped": ("tokens", "tokens at which this neuron saturated"),
    "zero": ("values", "values whose integer code is 0"),
    "max_abs_code": ("integer code", "largest |code| at the site for this token"),
    "effective_bits": ("bits", "bits the largest |code| needs (sign included), at most the register's"),
    "bits": ("bits", "width of the register the site's codes live in"),
    "underflow": ("values", "values the float model has nonzero that the integer model rounds to code 0 (null where the float "
    "model has no counterpart)"),
    "underflow_rate": ("share", "underflow / values"),
    "clipped_rate": ("share", "clipped / values"),
    "zero_rate": ("share", "zero / values"),
}

TABLE_NOTES = {
    "tokens": "one row per token of the sequence (prompt + generated)",
    "generation": "one row per generated token of the integer model, with its probability and alternatives",
    "token_metrics": "row t: the next-token distributions after reading token t, i.e. the prediction of token t + 1",
    "tensor_error": "float vs integer per token, layer and site",
    "per_layer_error": "tensor_error averaged over tokens (max_abs_error: maximum)",
    "activity": "one row per token (time step) and neuro-core",
    "saturation": "one row per token and site",
    "saturated_neurons": "one row per clipped value",
    "states": "MLGRU state registers, one row per token, layer and neuron",
    "tensors": "every probed value of the integer model, dequantized",
    "cores": "the core map: which neurons sit on which neuro-core",
}


def run_metadata(analysis: Analysis, *, model: str, directory: str, parameters: int, qc: Any, backend: str) -> dict[str, Any]:
    """What produced a run: enough to reproduce it and to read its tables."""
    return {
        "model": model,
        "model_directory": directory,
        "parameters": parameters,
        "backend": backend,
        "prompt": analysis.prompt,
        "prompt_tokens": analysis.prompt_tokens,
        "generated_tokens": len(analysis.run.tokens),
        "sampling": dataclasses.asdict(analysis.sampling),
        "quant_config": dataclasses.asdict(qc),
        "token_convention": TOKEN_KEY,
        "exported_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def generation_table(analysis: Analysis, tokenizer: Tokenizer) -> pl.DataFrame:
    """The integer model's generated tokens, with how far the float model's distribution was at each."""
    rows = token_table(analysis.run.tokens, tokenizer, first_token=analysis.prompt_tokens)
    producing = analysis.producing_rows()
    return pl.DataFrame(rows).with_columns(
        pl.Series("kl_nats", producing["kl"].to_list(), dtype=pl.Float64),
        pl.Series("same_top1", producing["agree"].to_list(), dtype=pl.Boolean),
    )


def token_metrics_table(analysis: Analysis) -> pl.DataFrame:
    t = analysis.diff.tokens
    last = t.height - 1
    return t.select(
        "token",
        "token_id",
        pl.when(pl.col("token") < last).then(pl.col("token") + 1).alias("predicts_token"),
        pl.col("token_id").shift(-1).alias("next_token_id"),
        pl.col("kl").alias("kl_nats"),
        "top1_float",
        "top1_int",
        pl.col("agree").alias("same_top1"),
        "float_top1_rank_in_int",
        pl.col("nll_float").alias("nll_float_nats"),
        pl.col("nll_int").alias("nll_int_nats"),
    )


def export_tables(analysis: Analysis, tokenizer: Tokenizer) -> dict[str, pl.DataFrame]:
    """Every table of an analysis, in export form (join key `token`, no spaces, units in names)."""
    tables = {
        "tokens": analysis.tables["tokens"],
        "generation": generation_table(analysis, tokenizer),
        "token_metrics": token_metrics_table(analysis),
        "tensor_error": analysis.diff.tensors,
        "per_layer_error": analysis.diff.per_layer(),
    }
    tables |= {name: table for name, table in analysis.tables.items() if name not in tables}
    probe = analysis.run.probe
    if "tensors" not in tables and probe is not None and probe.record_tensors:
        tables["tensors"] = probe.tensors()  # the long table: built here, on export, not kept with the analysis
    for name, table in tables.items():
        check_columns(table, name)
    return tables


def check_columns(table: pl.DataFrame, name: str = "table") -> None:
    """Refuse a column name with spaces (a programming error: exports must be easy to script)."""
    bad = [c for c in table.columns if not c or any(ch.isspace() for ch in c)]
    if bad:
        raise ValueError(f"{name}: column names must not contain spaces: {bad}")


def column_dictionary(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """table, column, dtype, unit, description: one row per column of every table."""
    rows = []
    for name, table in tables.items():
        for column, dtype in table.schema.items():
            unit, description = COLUMNS.get(column, ("", ""))
            rows.append(
                {
                    "table": name, "column": column, "dtype": str(dtype), "unit": unit, "description": description,
                    "table_note": TABLE_NOTES.get(name, "")
                }
            )
    return pl.DataFrame(
        rows,
        schema={
            "table": pl.String, "column": pl.String, "dtype": pl.String, "unit": pl.String, "description": pl.String,
            "table_note": pl.String
        }
    )


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False, default=str)


def csv_bytes(table: pl.DataFrame, metadata: Mapping[str, Any] | None = None, note: str = "") -> bytes:
    """CSV whose first lines (each starting with "#") hold the run metadata; the header follows."""
    check_columns(table)
    lines = []
    if metadata is not None:
        lines += [
            f"# {line}" for line in ("inspector run: " + json.dumps(metadata, ensure_ascii=False, default=str)).splitlines()
        ]
    if note:
        lines.append(f"# {note}")
    lines.append("# read with polars.read_csv(path, comment_prefix='#') or pandas.read_csv(path, skiprows=%d)" % (len(lines) + 1))
    return ("\n".join(lines) + "\n").encode() + table.write_csv().encode()


def parquet_bytes(table: pl.DataFrame, metadata: Mapping[str, Any] | None = None) -> bytes:
    check_columns(table)
    out = io.BytesIO()
    table.write_parquet(out, metadata={PARQUET_METADATA_KEY: json.dumps(metadata, default=str)} if metadata is not None else None)
    return out.getvalue()


def figures_html(
    figures: Mapping[str, go.Figure], metadata: Mapping[str, Any] | None = None, title: str = "Loihi LM Inspector",
) -> str:
    """One self-contained HTML page: plotly.js inlined once, then every figure, then the run metadata.

    Opens offline: nothing is loaded from a CDN.
    """
    parts = [
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title>",
        f"<script type=\"text/javascript\">{plotly.offline.get_plotlyjs()}</script>",
        "</head><body style=\"font-family:sans-serif\">",
    ]
    for name, fig in figures.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False))
    if metadata is not None:
        parts.append("<h3>Run</h3><pre>" + html.escape(_metadata_json(metadata)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def bundle_figures(analysis: Analysis, tokenizer: Tokenizer) -> dict[str, go.Figure]:
    """The figures that summarize a run, built from its data (the pages show these and more)."""
    from inspector.views import figures as F

    activity = analysis.tables["activity"]
    n = analysis.prompt_tokens
    return {
        "SQNR along depth": F.layer_error_figure(analysis.diff.tensors, sites=list(DEPTH_SITES)),
        "KL per token": F.kl_agreement_figure(analysis.diff.tokens, n),
        "Messages per layer and token": F.activity_heatmap(activity, by="layer", value="messages"),
        "Event sparsity": F.sparsity_figure(activity),
        "Synaptic operations per token": F.synops_figure(activity, n),
        "Saturation rate": F.saturation_rate_figure(analysis.tables["saturation"]),
    }


def bundle_zip(analysis: Analysis, tokenizer: Tokenizer, metadata: Mapping[str, Any]) -> bytes:
    """One zip: every table (Parquet, and CSV except the largest), run.json, columns.csv, figures.html."""
    tables = export_tables(analysis, tokenizer)
    dictionary = column_dictionary(tables)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("run.json", _metadata_json(metadata) + "\n")
        z.writestr("columns.csv", dictionary.write_csv())
        for name, table in tables.items():
            z.writestr(f"tables/{name}.parquet", parquet_bytes(table, metadata))
            if name not in BIG_TABLES:
                z.writestr(f"tables/{name}.csv", csv_bytes(table, metadata, TABLE_NOTES.get(name, "")))
        z.writestr("figures.html", figures_html(bundle_figures(analysis, tokenizer), metadata))
        z.writestr("README.txt", _bundle_readme(tables))
    return out.getvalue()


def _bundle_readme(tables: Mapping[str, pl.DataFrame]) -> str:
    """README.txt of the zip: lists exactly the tables the zip holds (a test compares the two)."""
    parquet_only = [name for name in BIG_TABLES if name in tables]
    lines = [
        "Loihi LM Inspector export",
        "",
        "run.json       what produced this run (model, prompt, sampling, QuantConfig, backend)",
        "columns.csv    every column of every table: type, unit, meaning",
        "figures.html   the run's main figures; self-contained, opens offline",
        "tables/        one Parquet file per table (run metadata in its key-value metadata) and a CSV",
        "               (run metadata as '#' lines before the header"
        + (f"; {', '.join(parquet_only)} as Parquet only)" if parquet_only else ")"),
        "",
        "Join key: " + TOKEN_KEY + ".",
        "token_metrics row t is the prediction of token t + 1 (column predicts_token).",
        "",
    ]
    lines += [f"{name:<18} {table.height:>9,} rows  {TABLE_NOTES.get(name, '')}" for name, table in tables.items()]
    return "\n".join(lines) + "\n"
