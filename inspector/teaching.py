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
from inspector.figures import _layout, series_color
from inspector.quant.config import QuantConfig
from inspector.sites import PROJECTIONS
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
    return _layout(
        fig, f"Graded spikes into layer {layer} i_proj at one token: {zero} of {codes.size} are 0 (no message)", "code",
        "neurons",
    )


def state_traces_figure(analysis: Analysis, layer: int = 0, neurons: int = 4) -> go.Figure:
    """A few MLGRU neurons' state h over tokens: float model vs the integer register."""
    key = f"layers.{layer}.hidden"
    f = analysis.diff.float_values[key].numpy()
    q = analysis.diff.int_probe.site_values(key).numpy()
    x = np.arange(analysis.window_start, analysis.window_start + f.shape[0])  # tokens from the start of the prompt
    order = np.argsort(-np.abs(f).mean(axis=0))[:neurons]
    fig = go.Figure()
    for index, n in enumerate(order):  # one color per neuron: its float line and its integer dots
        color = series_color(index)
        fig.add_scatter(x=x, y=f[:, n], mode="lines", name=f"neuron {n} float", line_color=color, legendgroup=str(n))
        fig.add_scatter(
            x=x, y=q[:, n], mode="markers", name=f"neuron {n} integer", marker=dict(size=6, color=color), legendgroup=str(n),
        )
    return _layout(
        fig, f"MLGRU state h of layer {layer}: the neuron remembers, decaying by f each token", "token", "h", height=420,
    )


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


# The saturation step's experiment: the user's settings beside two that lose values at either end
# of the register's range. Widths: the smallest the sidebar offers.
NARROWEST = {
    "act_bits": 3, "spike_bits": 3, "internal_bits": 6, "residual_bits": 3, "state_bits": 6, "gate_frac_bits": 4, "lut_bits": 6,
}
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


def saturation_experiment(
    ids: list[int], settings: dict[str, QuantConfig], backend_for: Callable[[QuantConfig], Emulator],
) -> pl.DataFrame:
    """Each setting's integer model on the same tokens, against the float model: how many MLGRU
    states clipped and underflowed, all values likewise, and what it did to the next-token choice."""
    rows = []
    for label, qc in settings.items():
        result = compare(backend_for(qc), ids, keep_from=len(ids) - 1)  # per-token counts only
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


def _nonzero_share(analysis: Analysis) -> float:
    table = spike_nonzero_table(analysis)
    return float(table["nonzero"].sum()) / max(float(table["spikes"].sum()), 1.0)




def spike_nonzero_table(analysis: Analysis) -> pl.DataFrame:
    """Per layer and projection: how many graded spikes into its synapses were nonzero (sent).

    Measured on the run's own integer values: each BitLinear input is quantized to `spike_bits`
    and only nonzero codes become messages.
    """
    spikes = analysis.run.probe.saturation().filter(pl.col("site").str.ends_with(".spikes") & (pl.col("layer") >= 0))
    table = (
        spikes.group_by(["layer", "site"], maintain_order=True)
        .agg(pl.col("values").sum().alias("spikes"), (pl.col("values") - pl.col("zero")).sum().alias("nonzero"))
        .with_columns(pl.col("site").str.replace(r"\.spikes$", "").alias("projection"))
        .select(pl.col("layer").cast(pl.Int64), "projection", pl.col("spikes").cast(pl.Int64), pl.col("nonzero").cast(pl.Int64))
    )
    return table.with_columns((pl.col("nonzero") / pl.col("spikes")).alias("nonzero_share")).sort("layer")


def spike_sparsity_figure(table: pl.DataFrame) -> go.Figure:
    """Share of graded spikes that were nonzero, per projection input and layer (0% would be free)."""
    fig = go.Figure()
    for index, projection in enumerate(p for p in PROJECTIONS if p in set(table["projection"].to_list())):
        part = table.filter(pl.col("projection") == projection)
        fig.add_bar(
            x=[f"layer {n}" for n in part["layer"].to_list()], y=part["nonzero_share"].to_list(), name=projection,
            marker_color=series_color(index),
        )
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    fig.update_layout(barmode="group")
    return _layout(
        fig, "Graded spikes that were nonzero (each one is a message and costs synaptic ops)", "layer", "nonzero spikes",
    )


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
