"""Traces on disk: one Parquet table per probe kind, plus `run.json` with what produced them.

Schema (all integer columns Int64; `token` counts prompt and generated tokens from 0):
- tokens.parquet: token, token_id, piece (raw vocabulary entry), text (decoded), is_prompt, is_special
- activity.parquet: token, core, chip, layer, group, messages, active_neurons, synops, neuron_updates, neurons
- saturation.parquet: token, layer, site, kind, clipped, values
- saturated_neurons.parquet: token, layer, site, neuron, code
- states.parquet: token, layer, neuron, code  (MLGRU state registers)
- tensors.parquet: token, layer, site, neuron, value (Float32, dequantized; only with tensors on)
- cores.parquet: core, chip, layer, group, start, end, neurons, synapses, memory_bytes
`layer` is -1 for sites outside the layer stack (embeddings, final_norm).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
from tokenizers import Tokenizer

from inspector.emulator.engine import Emulator, EmulatorRun
from inspector.tokenizer import decode

TABLES = ("tokens", "activity", "saturation", "saturated_neurons", "states", "tensors", "cores")


def token_frame(tokenizer: Tokenizer, ids: list[int], prompt_tokens: int) -> pl.DataFrame:
    """One row per token of a sequence, keyed by `token` (its index from the start of the sequence).

    Nothing here assumes what token 0 is: a special token the tokenizer added (a BOS, say) is a row
    like any other, flagged `is_special` from the tokenizer's own list of special tokens.
    """
    special = {i for i, added in tokenizer.get_added_tokens_decoder().items() if added.special}
    return pl.DataFrame(
        {
            "token": list(range(len(ids))),
            "token_id": ids,
            "piece": [tokenizer.id_to_token(i) for i in ids],
            "text": [decode(tokenizer, [i]) for i in ids],
            "is_prompt": [k < prompt_tokens for k in range(len(ids))],
            "is_special": [i in special for i in ids],
        },
        schema_overrides={"token": pl.Int64, "token_id": pl.Int64, "piece": pl.String, "text": pl.String},
    )


def run_tables(run: EmulatorRun, emulator: Emulator) -> dict[str, pl.DataFrame]:
    """Every table of a probed run, in memory (the app shows these; the CLI writes them)."""
    if run.probe is None:
        raise ValueError("this run was made without probes")
    tables = {
        "tokens": token_frame(emulator.loaded.tokenizer, run.all_ids, len(run.prompt_ids)),
        "activity": run.probe.activity(),
        "saturation": run.probe.saturation(),
        "saturated_neurons": run.probe.saturated_neurons(),
        "states": run.probe.states(),
        "cores": emulator.core_map.table,
    }
    if run.probe.record_tensors:
        tables["tensors"] = run.probe.tensors()
    return tables


def write_traces(run: EmulatorRun, emulator: Emulator, out_dir: str | Path, metadata: dict[str, Any]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in run_tables(run, emulator).items():
        table.write_parquet(out / f"{name}.parquet")
    (out / "run.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return out


def read_traces(out_dir: str | Path) -> dict[str, pl.DataFrame]:
    out = Path(out_dir)
    return {name: pl.read_parquet(out / f"{name}.parquet") for name in TABLES if (out / f"{name}.parquet").exists()}
