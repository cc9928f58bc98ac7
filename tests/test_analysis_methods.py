"""The aggregations the pages show, computed by Analysis methods, against plain recomputations."""

from __future__ import annotations

import polars as pl
import pytest

from inspector.backends.emulator import Emulator
from inspector.compare.analysis import Analysis, analyze
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings
from inspector.quant.config import QuantConfig
from inspector.views.exports import generation_table


def _analysis(tiny_checkpoint) -> tuple[Analysis, Emulator]:
    emulator = Emulator(load_checkpoint(tiny_checkpoint), QuantConfig(state_bits=10, state_headroom=0.5))
    return analyze(emulator, "To be, or", SamplingSettings(max_new_tokens=6, temperature=0.9, top_k=20, seed=3)), emulator


def test_agreement_is_the_mean_over_the_generated_tokens(tiny_checkpoint):
    analysis, emulator = _analysis(tiny_checkpoint)
    table = generation_table(analysis, emulator.loaded.tokenizer)
    share, kl = analysis.generation_agreement()
    assert share == pytest.approx(sum(table["same_top1"].to_list()) / table.height)
    assert kl == pytest.approx(sum(table["kl_nats"].to_list()) / table.height)
    assert analysis.producing_position(analysis.prompt_tokens) == analysis.prompt_tokens - 1


def test_activity_and_saturation_totals_recounted_from_the_probe(tiny_checkpoint):
    analysis, emulator = _analysis(tiny_checkpoint)
    probe = analysis.run.probe
    activity = probe.activity().to_dicts()
    tokens = probe.tokens()
    per_token = analysis.activity_per_token()
    assert per_token["messages"] == pytest.approx(sum(r["messages"] for r in activity) / tokens)
    assert per_token["synops"] == pytest.approx(sum(r["synops"] for r in activity) / tokens)
    silent = 1 - sum(r["active_neurons"] for r in activity) / sum(r["neurons"] for r in activity)
    assert per_token["silent_share"] == pytest.approx(silent)

    totals = analysis.saturation_totals()
    config = emulator.loaded.config
    # every MLGRU state of every layer, every token
    assert totals["state_values"] == config.num_hidden_layers * config.mixer_size * tokens
    saturation = probe.saturation()
    assert totals["clipped"] == int(saturation["clipped"].sum())
    assert totals["state_clipped"] == int(saturation.filter(pl.col("kind") == "state")["clipped"].sum())
    codes = analysis.tables["states"]["code"].to_numpy()
    assert totals["state_zero"] >= int((codes == 0).sum())  # the window is part of every token


def test_state_codes_of_one_core_are_its_neurons_over_the_window(tiny_checkpoint):
    analysis, _ = _analysis(tiny_checkpoint)
    first, last = analysis.window_tokens
    cores = analysis.tables["cores"].filter((pl.col("layer") == 1) & (pl.col("group") == "mlgru"))
    everything, where_all = analysis.state_codes(1)
    assert where_all == "layer 1"
    total = 0
    for row in cores.iter_rows(named=True):
        codes, where = analysis.state_codes(1, row["core"])
        assert where == f"layer 1, core {row['core']}"
        assert codes.size == (row["end"] - row["start"]) * (last - first + 1)
        total += codes.size
    assert total == everything.size
