"""Figure builders and the hardware estimate, as plain functions (AppTest cannot look inside charts)."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from inspector.backends.emulator import Emulator
from inspector.chip.estimate import OpCosts, estimate
from inspector.compare.analysis import analyze
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings
from inspector.views import figures as F
from inspector.views.teaching import ternary_counts, worked_synapse_example


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, tiny_tokenizer):
    from inspector.lm.checkpoint import save_checkpoint
    from inspector.lm.model import HGRNBitForCausalLM
    from tests.conftest import randomize, tiny_config

    model = randomize(HGRNBitForCausalLM(tiny_config(vocab_size=tiny_tokenizer.get_vocab_size())))
    directory = save_checkpoint(model, tiny_tokenizer, tmp_path_factory.mktemp("fig") / "tiny")
    emulator = Emulator(load_checkpoint(directory))
    return emulator, analyze(emulator, "To be, or not", SamplingSettings(5, 0.7, 20, 2))


def test_activity_heatmap_sums_match(analysis):
    _, a = analysis
    activity = a.tables["activity"]
    fig = F.activity_heatmap(activity, by="layer")
    z = np.array(fig.data[0].z)
    assert z.sum() == activity["messages"].sum()
    assert z.shape[1] == a.run.probe.tokens()
    fig = F.activity_heatmap(activity, by="core", value="synops")
    assert np.array(fig.data[0].z).sum() == activity["synops"].sum()


def test_long_runs_are_binned_in_the_heatmap(analysis):
    """Beyond max_columns tokens the heatmap draws bins of equal width holding per-token means."""
    _, a = analysis
    activity = a.tables["activity"]
    tokens = a.run.probe.tokens()
    fig = F.activity_heatmap(activity, by="layer", max_columns=3)
    z = np.array(fig.data[0].z)
    width = -(-tokens // 3)
    assert z.shape[1] == -(-tokens // width) <= 3
    per_token = activity.group_by(["layer", "token"]).agg(pl.col("messages").sum()).filter(pl.col("token") < width)
    first_bin = per_token.group_by("layer").agg(pl.col("messages").mean()).sort("layer")["messages"].to_numpy()
    assert np.allclose(z[:, 0], first_bin)
    assert "bins of" in fig.layout.title.text


def test_range_use_table_counts_both_ends(analysis):
    _, a = analysis
    table = F.range_use_table(a.tables["saturation"])
    assert {"clipped", "underflow", "effective_bits", "bits", "underflow_rate"} <= set(table.columns)
    assert (table["effective_bits"] <= table["bits"]).all()
    hidden = table.filter(pl.col("site") == "hidden")
    assert hidden["underflow"].is_not_null().all()
    assert table.filter(pl.col("site").str.ends_with(".accumulator"))["underflow"].is_null().all()
    fig = F.saturation_rate_figure(a.tables["saturation"])
    assert any("underflow" in trace.name for trace in fig.data)


def test_sparsity_is_a_share(analysis):
    _, a = analysis
    fig = F.sparsity_figure(a.tables["activity"])
    assert all(0 <= v <= 1 for v in fig.data[0].y)


def test_raster_marks_exactly_the_messages(analysis):
    _, a = analysis
    core = int(a.tables["cores"].filter(pl.col("group") == "proj_o")["core"][0])
    messages = a.run.probe.core_messages(core)
    fig = F.raster_figure(messages, core, 0, "proj_o", 0)
    assert len(fig.data[0].x) == int((messages > 0).sum())


def test_distribution_figure_probabilities(analysis):
    emulator, a = analysis
    fig = F.distribution_figure(a.diff.float_logits[0], a.diff.int_logits[0], emulator.loaded.tokenizer, k=5)
    assert [t.name for t in fig.data] == ["float", "integer"]
    probs = torch.softmax(a.diff.float_logits[0], -1)
    assert max(fig.data[0].y) == pytest.approx(float(probs.max()))


def test_layer_and_token_error_figures(analysis):
    _, a = analysis
    fig = F.layer_error_figure(a.diff.tensors, sites=["hidden", "residual_mlp"])
    assert {t.name for t in fig.data} == {"hidden", "residual_mlp"}
    fig = F.token_error_figure(a.diff.tensors, "hidden", 0, "cosine", a.prompt_tokens)
    assert len(fig.data[0].x) == len(a.diff.ids)


def test_scatter_and_state_histogram(analysis):
    _, a = analysis
    key = "layers.0.hidden"
    fig = F.scatter_figure(a.diff.float_values[key], a.diff.int_probe.site_values(key), "h")
    assert len(fig.data[0].x) == a.diff.float_values[key].numel()
    codes = a.tables["states"]["code"].to_numpy()
    fig = F.state_histogram_figure(codes, 24, "states")
    assert len(fig.data[0].x) == codes.size


def test_colored_tokens_html_escapes_and_colors():
    html = F.colored_tokens_html(["<b>", "ok"], [False, True], [0.5, 0.001], selected=1)
    assert "&lt;b&gt;" in html and "#f4a6a6" in html and "#b7e4b0" in html and "outline" in html


def test_core_map_and_saturation_figures(analysis):
    emulator, a = analysis
    fig = F.core_map_figure(a.tables["cores"], emulator.hardware.core_sram_bytes)
    assert sum(len(t.x) for t in fig.data) == a.tables["cores"].height
    fig = F.saturation_rate_figure(a.tables["saturation"])
    assert len(fig.data) >= 1


def test_estimate_scales_with_costs(analysis):
    emulator, a = analysis
    base = estimate(a.tables["activity"], emulator.core_map.chips, OpCosts())
    c = OpCosts()
    doubled = estimate(
        a.tables["activity"], emulator.core_map.chips,
        dataclasses.replace(
            c, synop_pj=2 * c.synop_pj, neuron_update_pj=2 * c.neuron_update_pj, neuron_inactive_pj=2 * c.neuron_inactive_pj,
            message_pj=2 * c.message_pj, static_w_per_chip=2 * c.static_w_per_chip,
        ),
    )
    assert doubled.energy_per_token_mj == pytest.approx(2 * base.energy_per_token_mj)
    assert base.generation.tokens_per_s > 0 and base.prefill.tokens_per_s >= base.generation.tokens_per_s
    # a hand computation for the first token: active neurons (those that sent a message) and silent ones cost differently
    act = a.tables["activity"].filter(pl.col("token") == 0)
    active = act["active_neurons"].sum()
    dynamic_uj = (
        act["synops"].sum() * c.synop_pj + active * c.neuron_update_pj
        + (act["neuron_updates"].sum() - active) * c.neuron_inactive_pj + act["messages"].sum() * c.message_pj
    ) * 1e-6
    first = base.per_token.row(0, named=True)
    static_uj = emulator.core_map.chips * c.static_w_per_chip * first["latency_us"]
    assert first["energy_uj"] == pytest.approx(dynamic_uj + static_uj)


def test_teaching_facts(analysis):
    emulator, a = analysis
    counts = ternary_counts(emulator)
    assert sum(counts.values()) > 0
    example = worked_synapse_example(emulator, a)
    assert example["matches_chip"]


def test_estimate_figure_draws_energy_and_latency_on_their_own_axes(analysis):
    emulator, a = analysis
    est = estimate(a.tables["activity"], emulator.core_map.chips)
    fig = F.estimate_figure(est.per_token)
    energy, latency = fig.data
    assert energy.yaxis != latency.yaxis  # separate panels: the energy line can no longer hide under the latency line
    assert list(energy.y) == est.per_token["energy_uj"].to_list() and list(latency.y) == est.per_token["latency_us"].to_list()
    assert fig.layout[energy.yaxis.replace("y", "yaxis")].domain != fig.layout[latency.yaxis.replace("y", "yaxis")].domain


@pytest.mark.parametrize("by", ["layer", "group"])
def test_energy_breakdown_adds_up_to_the_generation_energy(analysis, by):
    emulator, a = analysis
    est = estimate(a.tables["activity"], emulator.core_map.chips)
    fig = F.energy_breakdown_figure(est.per_group, by)
    assert [t.name for t in fig.data][0].startswith("static")
    total_uj = sum(sum(t.y) for t in fig.data)
    assert total_uj * 1e-3 == pytest.approx(est.generation.energy_per_token_mj)
    stages = F.stage_time_figure(est.per_group)
    assert sum(sum(t.y) for t in stages.data) * 1e-6 == pytest.approx(est.generation.seconds_per_token)
