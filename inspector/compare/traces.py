"""Traces on disk: one Parquet table per probe kind, plus `run.json` with what produced them.

Schema (all integer columns Int64; `token` counts prompt and generated tokens from 0):
- tokens.parquet: token, token_id, piece (raw vocabulary entry), text (decoded), is_prompt, is_special
- activity.parquet: token, core, chip, layer, group, messages, active_neurons, synops, neuron_updates, neurons, messaging
- saturation.parquet: token, layer, site, kind, clipped, values, zero, max_abs_code, effective_bits, bits,
  underflow. `clipped`: values beyond the register's range; `zero`: codes equal to 0; `underflow`: values
  the float model (run in lockstep on the same tokens) has nonzero and the integer code rounds to 0
  (null for sites without a float counterpart, such as accumulators); `effective_bits`: bits needed
  for the largest |code| of that token (sign included), out of `bits` in the register.
- neuron_clips.parquet: layer, site, neuron, times_clipped (every token)
- saturated_neurons.parquet: token, layer, site, neuron, code (tokens of the window)
- states.parquet: token, layer, neuron, code  (MLGRU state registers; tokens of the window)
- tensors.parquet: token, layer, site, neuron, value (Float32, dequantized; tokens of the window; only with tensors on)
- cores.parquet: core, chip, layer, group, start, end, neurons, synapses, memory_bytes
`layer` is -1 for sites outside the layer stack (embeddings, final_norm). The window (per-neuron
tables) is the tokens from `keep_from` in run.json on; per-token tables cover every token.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl
from tokenizers import Tokenizer

from inspector.backends.base import BackendBase, BackendRun
from inspector.lm.tokenizer import special_token_ids, token_texts
from inspector.quant import messaging

TABLES = ("tokens", "activity", "saturation", "neuron_clips", "saturated_neurons", "states", "tensors", "cores")


def with_underflow(saturation: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """The saturation table with an `underflow` column from a lockstep comparison's per-site metrics
    (`DiffResult.tensors`): nonzero float values whose integer code is 0, per token and site."""
    if "underflow" in saturation.columns:
        saturation = saturation.drop("underflow")
    if metrics.is_empty():
        return saturation.with_columns(pl.lit(None, dtype=pl.Int64).alias("underflow"))
    return saturation.join(metrics.select("token", "layer", "site", "underflow"), on=["token", "layer", "site"], how="left")


def token_frame(tokenizer: Tokenizer, ids: list[int], prompt_tokens: int) -> pl.DataFrame:
    """One row per token of a sequence, keyed by `token` (its index from the start of the sequence).

    Nothing here assumes what token 0 is: a special token the tokenizer added (a BOS, say) is a row
    like any other, flagged `is_special`. `text` is what the token adds to the decoded text in
    context (a leading space kept; "" inside a multi-byte character, which its last token carries).
    """
    special = special_token_ids(tokenizer)
    return pl.DataFrame(
        {
            "token": list(range(len(ids))),
            "token_id": ids,
            "piece": [tokenizer.id_to_token(i) for i in ids],
            "text": token_texts(tokenizer, ids),
            "is_prompt": [k < prompt_tokens for k in range(len(ids))],
            "is_special": [i in special for i in ids],
        },
        schema_overrides={"token": pl.Int64, "token_id": pl.Int64, "piece": pl.String, "text": pl.String},
    )


def with_messaging(activity: pl.DataFrame, qc) -> pl.DataFrame:
    """The activity table with a `messaging` column: how each row's group sends ("dense", or e.g.
    "delta vth=4" for a group under event-driven messaging)."""
    modes = {g.core_group: messaging.setting(qc, key).label for key, g in messaging.GROUPS.items()}
    return activity.with_columns(pl.col("group").replace_strict(modes, default=messaging.DENSE).alias("messaging"))


def run_tables(run: BackendRun, backend: BackendBase, tensors: bool = True) -> dict[str, pl.DataFrame]:
    """Every table of a probed run, in memory (the app shows these; the CLI writes them)."""
    if run.probe is None:
        raise ValueError("this run was made without probes")
    tables = {
        "tokens": token_frame(backend.loaded.tokenizer, run.all_ids, len(run.prompt_ids)),
        "activity": with_messaging(run.probe.activity(), backend.qc),
        "saturation": run.probe.saturation(),
        "neuron_clips": run.probe.neuron_clips(),
        "saturated_neurons": run.probe.saturated_neurons(),
        "states": run.probe.states(),
        "cores": backend.core_map.table,
    }
    if tensors and run.probe.record_tensors:
        tables["tensors"] = run.probe.tensors()
    return tables


def write_traces(
    run: BackendRun, backend: BackendBase, out_dir: str | Path, metadata: dict[str, Any],
    underflow: pl.DataFrame | None = None, tensors_written: Future | None = None,
) -> Path:
    """Write every table and run.json. `underflow`: a lockstep comparison's `DiffResult.tensors`, whose
    underflow counts join the saturation table (without it the column is null). `tensors_written`:
    the `start_tensor_write` of this run already under way (waited for here, its error raised);
    without it tensors.parquet is written here."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = run_tables(run, backend, tensors=False)
    tables["saturation"] = with_underflow(tables["saturation"], underflow if underflow is not None else pl.DataFrame())
    for name, table in tables.items():
        table.write_parquet(out / f"{name}.parquet")
    if tensors_written is not None:
        tensors_written.result()
    elif run.probe.record_tensors:
        write_tensors(run, out)
    (out / "run.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return out


def write_tensors(run: BackendRun, out_dir: str | Path) -> None:
    """tensors.parquet, the largest table by far (a GB at 370M): streamed to disk one site at a time."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    streamed(run.probe.tensor_frames, run.probe.TENSOR_SCHEMA).sink_parquet(out / "tensors.parquet")


def start_tensor_write(run: BackendRun, out_dir: str | Path) -> Future | None:
    """Write tensors.parquet on a background thread, for `write_traces(tensors_written=...)`; None when
    the run recorded no tensors.

    The CLI starts it as soon as generation ends, so the write (Parquet encoding and compression, a
    couple of seconds at 370M, mostly outside the GIL) overlaps the lockstep float comparison and the
    other tables. It only reads the probe, which nothing changes once generation is over."""
    if run.probe is None or not run.probe.record_tensors:
        return None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensors.parquet")
    future = pool.submit(write_tensors, run, out_dir)
    pool.shutdown(wait=False)  # the thread ends with its one write; the future keeps its result or error
    return future


def streamed(frames: Callable[[], Iterator[pl.DataFrame]], schema: dict) -> pl.LazyFrame:
    """A LazyFrame whose rows come from `frames()` one DataFrame at a time (sink_parquet then never holds them all)."""
    from polars.io.plugins import register_io_source

    def source(with_columns, predicate, n_rows, batch_size) -> Iterator[pl.DataFrame]:
        for frame in frames():
            if with_columns is not None:
                frame = frame.select(with_columns)
            if predicate is not None:
                frame = frame.filter(predicate)
            yield frame

    return register_io_source(source, schema=schema)


def read_traces(out_dir: str | Path) -> dict[str, pl.DataFrame]:
    out = Path(out_dir)
    return {name: pl.read_parquet(out / f"{name}.parquet") for name in TABLES if (out / f"{name}.parquet").exists()}
