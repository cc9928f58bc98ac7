"""Facts for the guided tour, computed on the live model (no canned numbers)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
import torch

from inspector.analysis import Analysis
from inspector.emulator.engine import Emulator
from inspector.figures import _layout, series_color
from inspector.quant import kernels as K


def ternary_counts(emulator: Emulator, layer: int = 0) -> dict[str, int]:
    """How many weights of a layer's projections are -1, 0 and +1."""
    L = emulator.params.layers[layer]
    weights = torch.cat([p.weight.reshape(-1) for p in (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)])
    return {"-1": int((weights == -1).sum()), "0": int((weights == 0).sum()), "+1": int((weights == 1).sum())}


def weight_histogram(emulator: Emulator, layer: int = 0) -> go.Figure:
    """The latent float weights of f_proj and where absmean quantization cuts them into -1/0/+1."""
    w = emulator.loaded.model.model.layers[layer].attn.f_proj.weight.detach().reshape(-1).numpy()
    beta = float(np.abs(w).mean())
    fig = go.Figure(go.Histogram(x=w, nbinsx=120, marker_color="#4c72b0", name="float weights"))
    for edge in (-beta / 2, beta / 2):
        fig.add_vline(x=edge, line_dash="dash", line_color="#d62728")
    return _layout(fig, f"Layer {layer} f_proj weights: |w| < mean|w|/2 become 0, the rest ±1", "weight", "count")


def worked_synapse_example(emulator: Emulator, analysis: Analysis, layer: int = 0, neuron: int = 0, token: int = -1) -> dict:
    """One output neuron of i_proj: its accumulator is a sum of +inputs minus a sum of -inputs."""
    L = emulator.params.layers[layer]
    spikes = analysis.diff.int_probe.site_codes(f"layers.{layer}.i_proj.spikes")[token]
    weights = L.i_proj.weight[neuron]
    plus = spikes[weights == 1]
    minus = spikes[weights == -1]
    total = int(plus.sum() - minus.sum())
    check = int(K.ternary_matmul(spikes[None], L.i_proj.weight)[0, neuron])
    return {
        "inputs": int(spikes.numel()),
        "plus_terms": int((plus != 0).sum()),
        "minus_terms": int((minus != 0).sum()),
        "sum_plus": int(plus.sum()),
        "sum_minus": int(minus.sum()),
        "accumulator": total,
        "matches_chip": total == check,
    }


def spike_code_figure(analysis: Analysis, layer: int = 0, token: int = -1) -> go.Figure:
    codes = analysis.diff.int_probe.site_codes(f"layers.{layer}.i_proj.spikes")[token].numpy()
    fig = go.Figure(go.Histogram(x=codes, nbinsx=64, marker_color="#2ca02c", name="8-bit codes"))
    zero = int((codes == 0).sum())
    return _layout(fig, f"Graded spikes into layer {layer} i_proj at one token: {zero} of {codes.size} are 0 (no message)", "code", "neurons")


def state_traces_figure(analysis: Analysis, layer: int = 0, neurons: int = 4) -> go.Figure:
    """A few MLGRU neurons' state h over tokens: float model vs the integer register."""
    key = f"layers.{layer}.hidden"
    f = analysis.diff.float_values[key].numpy()
    q = analysis.diff.int_probe.site_values(key).numpy()
    order = np.argsort(-np.abs(f).mean(axis=0))[:neurons]
    fig = go.Figure()
    for index, n in enumerate(order):  # one color per neuron: its float line and its integer dots
        color = series_color(index)
        fig.add_scatter(y=f[:, n], mode="lines", name=f"neuron {n} float", line_color=color, legendgroup=str(n))
        fig.add_scatter(y=q[:, n], mode="markers", name=f"neuron {n} integer", marker=dict(size=6, color=color), legendgroup=str(n))
    return _layout(fig, f"MLGRU state h of layer {layer}: the neuron remembers, decaying by f each token", "token", "h", height=420)


def sparsity_summary(analysis: Analysis) -> dict[str, float]:
    """Event sparsity of a run: silent neurons, synaptic ops against a dense evaluation, nonzero spikes."""
    activity = analysis.tables["activity"]
    dense_ops = int(analysis.tables["cores"]["synapses"].sum())  # every stored synapse, every token
    per_token = activity.group_by("token").agg(pl.col("synops").sum(), pl.col("active_neurons").sum(), pl.col("neurons").sum())
    return {
        "synops_per_token": float(per_token["synops"].mean()),
        "dense_synops_per_token": float(dense_ops),
        "silent_share": 1 - float(per_token["active_neurons"].sum()) / float(per_token["neurons"].sum()),
        "spike_nonzero_share": _nonzero_share(analysis),
    }


def _nonzero_share(analysis: Analysis) -> float:
    table = spike_nonzero_table(analysis)
    return float(table["nonzero"].sum()) / max(float(table["spikes"].sum()), 1.0)


SPIKE_INPUTS = ("i_proj", "f_proj", "g_proj", "o_proj", "gate_proj", "down_proj")


def spike_nonzero_table(analysis: Analysis) -> pl.DataFrame:
    """Per layer and projection: how many graded spikes into its synapses were nonzero (sent).

    Measured on the run's own integer values: each BitLinear input is quantized to `spike_bits`
    and only nonzero codes become messages.
    """
    probe = analysis.run.probe
    rows = []
    for key, masks in probe.nonzero.items():
        if not key.endswith(".spikes") or not masks:
            continue
        layer, site = key.split(".")[1], key.split(".")[2]
        sent = torch.cat(masks, dim=0)
        rows.append({"layer": int(layer), "projection": site, "spikes": int(sent.numel()), "nonzero": int(sent.sum())})
    table = pl.DataFrame(rows, schema={"layer": pl.Int64, "projection": pl.String, "spikes": pl.Int64, "nonzero": pl.Int64})
    return table.with_columns((pl.col("nonzero") / pl.col("spikes")).alias("nonzero_share")).sort("layer")


def spike_sparsity_figure(table: pl.DataFrame) -> go.Figure:
    """Share of graded spikes that were nonzero, per projection input and layer (0% would be free)."""
    fig = go.Figure()
    for index, projection in enumerate(p for p in SPIKE_INPUTS if p in set(table["projection"].to_list())):
        part = table.filter(pl.col("projection") == projection)
        fig.add_bar(x=[f"layer {l}" for l in part["layer"].to_list()], y=part["nonzero_share"].to_list(), name=projection, marker_color=series_color(index))
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(barmode="group")
    return _layout(fig, "Graded spikes that were nonzero (each one is a message and costs synaptic ops)", "layer", "nonzero spikes")


def layer_op_counts(emulator: Emulator, layer: int = 0) -> dict[str, int]:
    """Per token in one layer: additions through ternary synapses vs the multiplies that remain.

    Synapses add or subtract (one per nonzero weight, when every input is nonzero). Multiplies are
    left per *neuron*: each projection output is requantized (an integer multiply and a shift),
    each RMSNorm squares its inputs and scales by its gain, and the MLGRU computes f*h.
    """
    L = emulator.params.layers[layer]
    projections = (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)
    hidden = int(L.i_proj.weight.shape[1])
    return {
        "synapse_additions": sum(int((p.weight != 0).sum()) for p in projections),
        "requantize_multiplies": sum(int(p.weight.shape[0]) for p in projections),
        "norm_multiplies": 2 * 2 * hidden,  # two norms: a square and a gain per neuron
        "state_multiplies": int(L.f_proj.weight.shape[0]),  # f * h, one per MLGRU neuron
    }


def host_share(emulator: Emulator) -> dict[str, float]:
    """How big the LM head (kept on the host) is next to a layer's stored ternary synapses."""
    cfg = emulator.loaded.config
    lm_head = int(cfg.vocab_size) * int(cfg.hidden_size)
    per_layer = layer_op_counts(emulator)["synapse_additions"]
    return {"lm_head_weights": lm_head, "lm_head_in_layers": lm_head / max(per_layer, 1)}
