"""Facts for the guided tour, computed on the live model (no canned numbers)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl
import torch

from inspector.analysis import Analysis
from inspector.emulator.engine import Emulator
from inspector.figures import _layout


def ternary_counts(emulator: Emulator, layer: int = 0) -> dict[str, int]:
    """How many weights of a layer's projections are -1, 0 and +1."""
    L = emulator.params.layers[layer]
    weights = torch.cat([p.weight.reshape(-1) for p in (L.i_proj, L.f_proj, L.g_proj, L.o_proj, L.gate_proj, L.down_proj)])
    return {"-1": int((weights == -1).sum()), "0": int((weights == 0).sum()), "+1": int((weights == 1).sum())}


def weight_histogram(emulator: Emulator, layer: int = 0) -> go.Figure:
    """The latent float weights of f_proj and where absmean quantization cuts them into -1/0/+1."""
    matrix = emulator.params.layers[layer].f_proj.matrix
    beta, counts = matrix.beta, matrix.latent_histogram
    edges = matrix.histogram_edges().numpy()
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure(go.Bar(x=centers, y=counts.numpy(), width=widths, marker_color="#4c72b0", name="float weights"))
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
    check = int(L.i_proj.accumulate(spikes[None])[0, neuron])
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
    for n in order:
        fig.add_scatter(y=f[:, n], mode="lines", name=f"neuron {n} float")
        fig.add_scatter(y=q[:, n], mode="markers", name=f"neuron {n} integer", marker=dict(size=5))
    return _layout(fig, f"MLGRU state h of layer {layer}: the neuron remembers, decaying by f each token", "token", "h", height=420)


def sparsity_summary(analysis: Analysis) -> dict[str, float]:
    activity = analysis.tables["activity"]
    dense_ops = int(analysis.tables["cores"]["synapses"].sum())  # every stored synapse, every token
    per_token = activity.group_by("token").agg(pl.col("synops").sum(), pl.col("active_neurons").sum(), pl.col("neurons").sum())
    return {
        "synops_per_token": float(per_token["synops"].mean()),
        "dense_synops_per_token": float(dense_ops),
        "silent_share": 1 - float(per_token["active_neurons"].sum()) / float(per_token["neurons"].sum()),
    }
