"""Figures for finding the cause of the error: local vs cumulative, A/B, sensitivity, Pareto.

Plain functions of data frames (tested without Streamlit), in the style of `inspector.views.figures`.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from inspector.views.figures import _layout


def _finite(values: list[float], cap: float = 150.0) -> list[float]:
    """SQNR of an exact site is +inf; plot it at `cap` dB (the hover still says exact)."""
    return [cap if (v is None or math.isinf(v)) else v for v in values]


def local_cumulative_figure(sites: pl.DataFrame, site_filter: list[str] | None = None) -> go.Figure:
    """Local and cumulative SQNR of every site in data-flow order; the sites introducing most error starred."""
    table = sites if not site_filter else sites.filter(pl.col("site").is_in(site_filter))
    labels = [f"{'L' + str(layer) if layer >= 0 else 'host'} {s}" for layer, s in zip(table["layer"], table["site"], strict=True)]
    fig = go.Figure()
    fig.add_scatter(
        x=labels, y=_finite(table["cumulative_sqnr_db"].to_list()), mode="lines+markers", name="cumulative (own integers)",
    )
    fig.add_scatter(
        x=labels, y=_finite(table["local_sqnr_db"].to_list()), mode="lines+markers", name="local (quantized float inputs)",
        customdata=table["local_sqnr_db"].to_list(), hovertemplate="%{x}: %{customdata:.1f} dB<extra>local</extra>",
    )
    marked = table.with_row_index("i").filter(pl.col("introduces"))
    fig.add_scatter(
        x=[labels[i] for i in marked["i"]], y=_finite(marked["local_sqnr_db"].to_list()), mode="markers",
        marker=dict(symbol="star", size=16, color="#d62728"), name="introduces most error",
    )
    fig.update_xaxes(tickangle=-60)
    return _layout(fig, "Where the error is introduced: local vs cumulative SQNR along depth", "site", "SQNR (dB)", height=460)


def local_tokens_figure(tokens: pl.DataFrame, layer: int, site: str) -> go.Figure:
    rows = tokens.filter((pl.col("layer") == layer) & (pl.col("site") == site)).sort("token")
    fig = go.Figure()
    fig.add_scatter(x=rows["token"], y=_finite(rows["cumulative_sqnr_db"].to_list()), mode="lines", name="cumulative")
    fig.add_scatter(x=rows["token"], y=_finite(rows["local_sqnr_db"].to_list()), mode="lines", name="local")
    return _layout(fig, f"Layer {layer} {site}: local vs cumulative SQNR along tokens", "token", "SQNR (dB)")


def ab_sites_figure(sites: pl.DataFrame) -> go.Figure:
    labels = [f"{'L' + str(layer) if layer >= 0 else 'host'} {s}" for layer, s in zip(sites["layer"], sites["site"], strict=True)]
    fig = go.Figure()
    fig.add_scatter(x=labels, y=sites["sqnr_a"], mode="lines+markers", name="A")
    fig.add_scatter(x=labels, y=sites["sqnr_b"], mode="lines+markers", name="B")
    fig.update_xaxes(tickangle=-60)
    return _layout(fig, "A/B: SQNR per site", "site", "SQNR (dB)", height=440)


def ab_tokens_figure(tokens: pl.DataFrame) -> go.Figure:
    fig = go.Figure()
    fig.add_scatter(x=tokens["token"], y=tokens["kl_a"], mode="lines", name="A")
    fig.add_scatter(x=tokens["token"], y=tokens["kl_b"], mode="lines", name="B")
    return _layout(fig, "A/B: next-token KL from the float model", "token", "KL (nats)")


def sensitivity_figure(table: pl.DataFrame, top: int = 20) -> go.Figure:
    """Ranked bars: the KL and bits/char each knob costs when lowered (and gains when raised)."""
    rows = table.head(top)
    labels = [
        f"{k}={v}" + ("" if layer == "all" else f" @L{layer}")
        for k, v, layer in zip(rows["knob"], rows["lowered_to"], rows["layer"], strict=True)
    ]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=("Δ mean KL (nats)", "Δ bits/char (%)"))
    fig.add_bar(y=labels, x=rows["lower_dkl"], orientation="h", name="lowered", marker_color="#d62728", row=1, col=1)
    fig.add_bar(
        y=labels, x=rows["lower_dbpc_pct"], orientation="h", name="lowered", marker_color="#d62728", showlegend=False, row=1,
        col=2,
    )
    fig.add_bar(
        y=labels, x=rows["raise_dkl"], orientation="h", name="raised to most precise", marker_color="#2ca02c", row=1, col=1,
    )
    fig.add_bar(
        y=labels, x=rows["raise_dbpc_pct"], orientation="h", name="raised", marker_color="#2ca02c", showlegend=False, row=1,
        col=2,
    )
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Which knobs matter: change from the base config", "", "", height=max(320, 26 * len(labels)))


def pareto_figure(points: pl.DataFrame, front: pl.DataFrame, winner_id: str | None = None) -> go.Figure:
    """Accuracy vs chip cost of every evaluated all-layer config; the Pareto front joined up."""
    ok = points.filter((pl.col("status") == "ok") & (pl.col("layer") < 0))
    fig = go.Figure()
    # points evaluated with event-driven messaging (sigma-delta or threshold) get their own colour:
    # they trade accuracy for messages, where bit widths trade it for precision
    event = pl.col("messaging").fill_null("dense") != "dense" if "messaging" in ok.columns else pl.lit(False)
    groups = ((ok.filter(~event), "evaluated", "#9ecae1"), (ok.filter(event), "event-driven messaging", "#fdae6b"))
    for subset, name, color in groups:
        if name != "evaluated" and not subset.height:
            continue
        messages = subset["messages_per_token"] if "messages_per_token" in subset.columns else pl.Series([None] * subset.height)
        messages = messages.cast(pl.Float64).fill_null(float("nan"))
        fig.add_scatter(
            x=subset["energy_per_token_uj"], y=subset["delta_bpc_pct"], mode="markers", name=name,
            text=subset["label"], customdata=list(zip(subset["cores"], subset["chips"], messages, strict=True)),
            hovertemplate="%{text}<br>%{x:.1f} uJ/token, %{y:+.2f}% bits/char<br>%{customdata[0]} cores, %{customdata[1]} "
            "chip(s), %{customdata[2]:,.0f} messages/token<extra></extra>",
            marker=dict(color=color),
        )
    fig.add_scatter(
        x=front["energy_per_token_uj"], y=front["delta_bpc_pct"], mode="lines+markers", name="Pareto front",
        marker=dict(color="#1f77b4"),
    )
    if winner_id is not None:
        win = ok.filter(pl.col("point_id") == winner_id)
        if win.height:
            fig.add_scatter(x=win["energy_per_token_uj"], y=win["delta_bpc_pct"], mode="markers", name="search winner",
                            marker=dict(symbol="star", size=18, color="#d62728"))
    return _layout(fig, "Accuracy vs chip cost", "estimated energy per token (uJ)", "bits/char vs float (%)")
