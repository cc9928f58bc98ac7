"""Facts for the guided tour, computed on the live model (no canned numbers)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import plotly.graph_objects as go
import polars as pl
import torch

from inspector.analysis import Analysis
from inspector.diff import compare
from inspector.emulator.engine import Emulator
from inspector.figures import _layout
from inspector.quant.config import QuantConfig
from inspector.traces import with_underflow


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
    x = np.arange(analysis.window_start, analysis.window_start + f.shape[0])  # tokens from the start of the prompt
    order = np.argsort(-np.abs(f).mean(axis=0))[:neurons]
    fig = go.Figure()
    for n in order:
        fig.add_scatter(x=x, y=f[:, n], mode="lines", name=f"neuron {n} float")
        fig.add_scatter(x=x, y=q[:, n], mode="markers", name=f"neuron {n} integer", marker=dict(size=5))
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


# The saturation step's experiment: the user's settings beside two that lose values at either end
# of the register's range. Widths: the smallest the sidebar offers.
NARROWEST = {"act_bits": 3, "spike_bits": 3, "internal_bits": 6, "residual_bits": 3, "state_bits": 6, "gate_frac_bits": 4, "lut_bits": 6}
CLIPPING_HEADROOM = 0.25


def saturation_settings(qc: QuantConfig) -> dict[str, QuantConfig]:
    """The experiment's settings, by label: the user's, a state range 4x too small (clips), and
    every width at its minimum (values round to zero: underflow)."""
    return {
        "your settings": qc,
        f"state headroom {CLIPPING_HEADROOM} (the calibrated maximum is {1 / CLIPPING_HEADROOM:.0f}x beyond the state register)":
            qc.with_overrides({"state_headroom": CLIPPING_HEADROOM}),
        "every width at its minimum (" + ", ".join(f"{k}={v}" for k, v in NARROWEST.items()) + ")": qc.with_overrides(NARROWEST),
    }


def saturation_experiment(ids: list[int], settings: dict[str, QuantConfig], emulator_for: Callable[[QuantConfig], Emulator]) -> pl.DataFrame:
    """Each setting's integer model on the same tokens, against the float model: how many MLGRU
    states clipped and underflowed, all values likewise, and what it did to the next-token choice."""
    rows = []
    for label, qc in settings.items():
        result = compare(emulator_for(qc), ids, keep_from=len(ids) - 1)  # per-token counts only
        saturation = with_underflow(result.int_probe.saturation(), result.tensors)
        states = saturation.filter(pl.col("kind") == "state")
        rows.append({
            "setting": label,
            "state_bits": qc.state_bits,
            "state_headroom": qc.state_headroom,
            "states_clipped": float(states["clipped"].sum() / states["values"].sum()),
            "states_underflowed": float(states["underflow"].sum() / states["values"].sum()),
            "states_at_zero": float(states["zero"].sum() / states["values"].sum()),
            "values_clipped": int(saturation["clipped"].sum()),
            "values_underflowed": int(saturation["underflow"].sum()),
            "top1_agreement": float(result.tokens["agree"].mean()),
            "perplexity_int": result.perplexity_int,
        })
    return pl.DataFrame(rows)
