"""Plotly figure builders for the app's pages: plain functions of data, testable without Streamlit."""

from __future__ import annotations

import html

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import polars as pl
import torch
from plotly.subplots import make_subplots
from tokenizers import Tokenizer

from inspector import schema as S
from inspector.lm.tokenizer import decode

LEGEND_TOP = dict(orientation="h", yanchor="bottom", y=1.02, xanchor="left", x=0)
METRIC_LABELS = {
    "sqnr_db": "SQNR (dB)", "cosine": "cosine similarity", "max_abs_error": "max abs error", "rel_error": "relative error",
}
GROUP_COLORS = {
    S.NORM_ATTN: "#8da0cb", S.PROJ_IFG: "#1f77b4", S.MLGRU: "#d62728", S.PROJ_O: "#17becf", S.NORM_MLP: "#b5cf6b",
    S.PROJ_GATE: "#2ca02c", S.GLU_GROUP: "#ff7f0e", S.PROJ_DOWN: "#9467bd", S.RESIDUAL: "#7f7f7f", S.FINAL_NORM_GROUP: "#e377c2",
}

# 48 distinct colors (Plotly's default cycle has ten, so an eleventh series repeated the first)
SERIES_COLORS = plotly.colors.qualitative.Dark24 + plotly.colors.qualitative.Light24


def series_color(index: int) -> str:
    """The color of the index-th series of a chart; distinct for the first 48."""
    return SERIES_COLORS[index % len(SERIES_COLORS)]


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380) -> go.Figure:
    # The title sits at the very top and the legend just above the plot, so they never overlap.
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", y=0.98, yanchor="top", yref="container"),
        xaxis_title=x,
        yaxis_title=y,
        height=height + 40,
        margin=dict(l=60, r=20, t=120, b=50),
        legend=LEGEND_TOP,
        template="plotly_white",
    )
    return fig


def agreement_color(agree: bool, kl: float) -> str:
    """Green when both models pick the same top token and barely differ, red when they disagree."""
    if not agree:
        return "#f4a6a6"
    if kl < 0.01:
        return "#b7e4b0"
    if kl < 0.1:
        return "#fff1a8"
    return "#ffd08a"


def colored_tokens_html(
    pieces: list[str], agree: list[bool], kl: list[float], selected: int | None = None, first_token: int = 0
) -> str:
    """The generated text as spans colored by float/integer agreement (hover shows KL).

    Tokens are numbered from the start of the sequence (`first_token` is the index of the first
    generated token, i.e. the number of prompt tokens), as everywhere else; `selected` uses that index.
    """
    spans = []
    for k, (piece, a, d) in enumerate(zip(pieces, agree, kl, strict=False), start=first_token):
        border = "outline: 2px solid #333;" if k == selected else ""
        text = html.escape(piece).replace("\n", "↵<br>") or "∅"
        spans.append(
            f'<span title="token {k}: KL {d:.4f} nats, top-1 {"agrees" if a else "differs"}" '
            f'style="background:{agreement_color(a, d)};{border}padding:1px 0;border-radius:3px">{text}</span>'
        )
    return '<div style="font-family:monospace;line-height:1.9;white-space:pre-wrap">' + "".join(spans) + "</div>"


def distribution_figure(
    float_logits: torch.Tensor, int_logits: torch.Tensor, tokenizer: Tokenizer, k: int = 10,
    title: str = "Next-token distribution"
) -> go.Figure:
    """Top-k next-token probabilities of both models (union of both top-k sets)."""
    pf = torch.softmax(float_logits.double(), -1)
    pi = torch.softmax(int_logits.double(), -1)
    ids = list(dict.fromkeys(torch.topk(pf, k).indices.tolist() + torch.topk(pi, k).indices.tolist()))
    ids.sort(key=lambda i: -float(pf[i]))
    # escaped: Plotly draws a subset of HTML (links included) in tick labels, and these are model text
    labels = [html.escape(repr(decode(tokenizer, [i]))[1:-1]) or "∅" for i in ids]
    fig = go.Figure(
        [
            go.Bar(name="float", x=labels, y=[float(pf[i]) for i in ids], marker_color="#1f77b4"),
            go.Bar(name="integer", x=labels, y=[float(pi[i]) for i in ids], marker_color="#ff7f0e"),
        ]
    )
    fig.update_layout(barmode="group")
    return _layout(fig, title, "token", "probability")


def layer_error_figure(
    tensors: pl.DataFrame, metric: str = "sqnr_db", token: int | None = None, sites: list[str] | None = None,
    where: str | None = None
) -> go.Figure:
    """A metric along depth, one line per site (mean over tokens, or at one token).

    `sites=None` draws every site; an empty list draws none (the page says to pick one). `where`
    replaces the title's default " at token t" / " (mean over tokens)".
    """
    data = tensors.filter(pl.col("layer") >= 0)
    if token is not None:
        data = data.filter(pl.col("token") == token)
    if sites is not None:
        data = data.filter(pl.col("site").is_in(sites))
    data = data.filter(pl.col(metric).is_finite())
    agg = data.group_by(["site", "layer"]).agg(pl.col(metric).mean()).sort("layer")
    fig = go.Figure()
    order = sites if sites is not None else data["site"].unique(maintain_order=True).to_list()
    for index, site in enumerate(order):
        part = agg.filter(pl.col("site") == site)
        if part.height:
            fig.add_scatter(
                x=part["layer"].to_list(), y=part[metric].to_list(), mode="lines+markers", name=site,
                line_color=series_color(index), marker_color=series_color(index),
            )
    if where is None:
        where = f" at token {token}" if token is not None else " (mean over tokens)"
    fig.update_xaxes(dtick=1)
    label = METRIC_LABELS.get(metric, metric)
    return _layout(fig, f"{label} along depth{where}", "layer", label)


def token_error_figure(
    tensors: pl.DataFrame, site: str, layer: int, metric: str = "sqnr_db", prompt_tokens: int = 0,
) -> go.Figure:
    part = tensors.filter((pl.col("site") == site) & (pl.col("layer") == layer)).sort("token")
    fig = go.Figure(go.Scatter(x=part["token"].to_list(), y=part[metric].to_list(), mode="lines+markers", name=site))
    if prompt_tokens:
        fig.add_vline(x=prompt_tokens - 0.5, line_dash="dot", annotation_text="generation starts")
    label = METRIC_LABELS.get(metric, metric)
    return _layout(fig, f"{label} of layer {layer} {site} along tokens", "token", label)


def scatter_figure(float_values: torch.Tensor, int_values: torch.Tensor, title: str, max_points: int = 6000) -> go.Figure:
    """Float vs integer values of one tensor (all tokens); the diagonal is perfect agreement."""
    f = float_values.reshape(-1).double().numpy()
    q = int_values.reshape(-1).double().numpy()
    if f.size > max_points:
        pick = np.random.default_rng(0).choice(f.size, max_points, replace=False)
        f, q = f[pick], q[pick]
    lo, hi = float(min(f.min(), q.min())), float(max(f.max(), q.max()))
    fig = go.Figure(
        [
            go.Scattergl(x=f, y=q, mode="markers", marker=dict(size=4, opacity=0.5), name="values"),
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(dash="dash", color="gray"), name="integer = float"),
        ]
    )
    return _layout(fig, title, "float model", "integer model (dequantized)", height=420)


def kl_agreement_figure(tokens: pl.DataFrame, prompt_tokens: int = 0) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(
        x=tokens["token"].to_list(),
        y=tokens["kl"].to_list(),
        marker_color=["#2ca02c" if a else "#d62728" for a in tokens["agree"].to_list()],
        name="KL (green: same top-1, red: different)",
    )
    if prompt_tokens:
        fig.add_vline(x=prompt_tokens - 0.5, line_dash="dot", annotation_text="generation starts")
    return _layout(fig, "KL(float || integer) of the next-token distribution", "token", "KL (nats)")


HEATMAP_MAX_COLUMNS = 400


def activity_heatmap(
    activity: pl.DataFrame, by: str = "core", value: str = "messages", max_columns: int = HEATMAP_MAX_COLUMNS,
) -> go.Figure:
    """Messages (or synaptic ops) per core x token, or per layer x token.

    Beyond `max_columns` tokens, tokens are averaged in bins of equal width: a 2,400-token prompt
    would otherwise draw more columns than the chart has pixels (solid blocks) and take seconds.
    """
    key = "core" if by == "core" else "layer"
    n_tokens = int(activity["token"].max()) + 1 if activity.height else 0
    width = max(1, -(-n_tokens // max_columns))  # ceil
    agg = (
        activity.group_by([key, "token"]).agg(pl.col(value).sum())
        .with_columns((pl.col("token") // width).alias("bin"))
        .group_by([key, "bin"]).agg(pl.col(value).mean())
    )
    grid_frame = agg.pivot(on="bin", index=key, values=value).sort(key)
    bins = sorted(int(c) for c in grid_frame.columns if c != key)
    rows = grid_frame[key].to_list()
    grid = grid_frame.select([str(b) for b in bins]).fill_null(0).to_numpy().astype(float)
    x = [b * width + (width - 1) / 2 for b in bins] if width > 1 else bins
    labels = [("final" if r == -1 else f"layer {r}") if key == "layer" else str(r) for r in rows]
    fig = go.Figure(go.Heatmap(z=grid, x=x, y=labels, colorscale="Viridis", colorbar=dict(title=value)))
    binned = f" (mean per token over bins of {width} tokens)" if width > 1 else ""
    return _layout(fig, f"{value} per {key} and token{binned}", "token", key, height=max(320, min(900, 14 * len(rows) + 160)))


def sparsity_figure(activity: pl.DataFrame) -> go.Figure:
    """Event sparsity per layer: share of neurons that stayed silent (sent no message) per token."""
    agg = activity.group_by("layer").agg(pl.col("active_neurons").sum(), pl.col("neurons").sum()).sort("layer")
    sparsity = 1 - agg["active_neurons"].to_numpy() / np.maximum(agg["neurons"].to_numpy(), 1)
    labels = ["final" if layer == -1 else f"layer {layer}" for layer in agg["layer"].to_list()]
    fig = go.Figure(go.Bar(x=labels, y=sparsity, marker_color="#4c72b0", name="silent share"))
    fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, "Event sparsity per layer (silent neurons cost nothing)", "layer", "silent neurons")


def raster_figure(
    messages: np.ndarray, core: int, start: int, group: str, layer: int, first_token: int = 0, what: str = "Raster"
) -> go.Figure:
    """Which neurons of one core sent a message at which token (`first_token`: the row 0's token).
    `what` names the raster in the title (e.g. "Code changes")."""
    tokens, neurons = np.nonzero(messages)
    fig = go.Figure(
        go.Scattergl(
            x=tokens + first_token, y=neurons + start, mode="markers", marker=dict(size=4, symbol="line-ns-open", color="#222"),
            name="message"
        )
    )
    fig.update_xaxes(range=[first_token - 0.5, first_token + messages.shape[0] - 0.5])
    return _layout(
        fig, f"{what} of core {core} (layer {layer}, {group}, neurons {start}-{start + messages.shape[1] - 1})", "token",
        "neuron", height=420,
    )


def messaging_figure(comparison: pl.DataFrame, run_label: str) -> go.Figure:
    """Messages per token of each sending group: dense, sigma-delta at vth = 0 (the messages
    that carry a change) and this run's own mode (`inspector.compare.messaging.mode_comparison`)."""
    labels = comparison["label"].to_list()
    fig = go.Figure()
    for column, name, color in (
        ("dense", "dense (every nonzero code)", "#8c8c8c"),
        ("changes", "delta, vth = 0 (codes that changed)", "#4c72b0"),
        ("this_run", f"this run ({run_label})", "#dd8452"),
    ):
        fig.add_trace(go.Bar(x=labels, y=comparison[column].to_list(), name=name, marker_color=color))
    fig.update_layout(barmode="group")
    return _layout(fig, "Messages per token of each sending group: dense and event-driven", "sending group", "messages per token")


def synops_figure(activity: pl.DataFrame, prompt_tokens: int = 0) -> go.Figure:
    agg = activity.group_by("token").agg(pl.col("synops").sum(), pl.col("messages").sum()).sort("token")
    fig = go.Figure(go.Scatter(x=agg["token"].to_list(), y=agg["synops"].to_list(), mode="lines+markers", name="synaptic ops"))
    if prompt_tokens:
        fig.add_vline(x=prompt_tokens - 0.5, line_dash="dot", annotation_text="generation starts")
    return _layout(fig, "Synaptic operations per token (whole chip)", "token", "synaptic ops")


def state_histogram_figure(codes: np.ndarray, state_bits: int, title: str) -> go.Figure:
    """Distribution of fixed-point state codes against the register's representable range."""
    lo, hi = -(1 << (state_bits - 1)), (1 << (state_bits - 1)) - 1
    fig = go.Figure(go.Histogram(x=codes, nbinsx=80, marker_color="#4c72b0", name="state codes"))
    for edge, label, side in ((lo, "min", "top right"), (hi, "max", "top left")):
        fig.add_vline(
            x=edge, line_color="#d62728", line_dash="dash", annotation_text=f"{label} {edge:,}", annotation_position=side,
        )
    fig.update_xaxes(range=[lo * 1.05, hi * 1.05])
    return _layout(fig, title, "state code", "count")


def saturation_rate_figure(saturation: pl.DataFrame) -> go.Figure:
    """Share of clipped values per token, per kind of site (state, activation, gate, accumulator),
    and, dashed, the share that underflowed (nonzero in the float model, code 0) where known."""
    has_underflow = "underflow" in saturation.columns
    aggs = [pl.col("clipped").sum(), pl.col("values").sum()]
    if has_underflow:
        aggs += [pl.col("underflow").sum(), pl.col("values").filter(pl.col("underflow").is_not_null()).sum().alias("compared")]
    agg = saturation.group_by(["token", "kind"]).agg(aggs).with_columns(
        (pl.col("clipped") / pl.col("values")).alias("rate"),
    ).sort("token")
    fig = go.Figure()
    for index, kind in enumerate(agg["kind"].unique().sort().to_list()):
        part = agg.filter(pl.col("kind") == kind)
        color = series_color(index)
        fig.add_scatter(
            x=part["token"].to_list(), y=part["rate"].to_list(), mode="lines", name=f"{kind}: clipped", line=dict(color=color),
        )
        if has_underflow and part["compared"].sum() > 0:
            part = part.filter(pl.col("compared") > 0).with_columns((pl.col("underflow") / pl.col("compared")).alias("under"))
            fig.add_scatter(
                x=part["token"].to_list(), y=part["under"].to_list(), mode="lines", name=f"{kind}: underflow",
                line=dict(color=color, dash="dash"),
            )
    fig.update_yaxes(tickformat=".3~%", rangemode="tozero")
    title = "Clipped (solid) and underflowed (dashed) share per token" if has_underflow else "Saturation rate per token"
    return _layout(fig, title, "token", "share of values")


def range_use_table(saturation: pl.DataFrame) -> pl.DataFrame:
    """Per layer and site over every token: clipped, underflowed and zero values, and the bits the
    largest |code| needed out of the register's bits (how much of the range is used)."""
    aggs = [
        pl.col("clipped").sum(), pl.col("values").sum(), pl.col("zero").sum(),
        pl.col("max_abs_code").max(), pl.col("effective_bits").max(), pl.col("bits").first(),
    ]
    if "underflow" in saturation.columns:
        aggs.append(pl.col("underflow").sum().alias("underflow"))
        aggs.append(pl.col("underflow").is_null().all().alias("no_float"))
    table = saturation.group_by(["layer", "site", "kind"], maintain_order=True).agg(aggs)
    if "underflow" in table.columns:
        table = table.with_columns(
            pl.when(pl.col("no_float")).then(None).otherwise(pl.col("underflow")).alias("underflow"),
        ).drop("no_float")
        table = table.with_columns((pl.col("underflow") / pl.col("values")).alias("underflow_rate"))
    return table.with_columns(
        (pl.col("clipped") / pl.col("values")).alias("clipped_rate"),
        (pl.col("zero") / pl.col("values")).alias("zero_rate"),
    ).sort(["layer"], maintain_order=True)


def core_map_figure(cores: pl.DataFrame, sram_bytes: int) -> go.Figure:
    """Memory per core, colored by neuron group, against the core's SRAM."""
    fig = go.Figure()
    for group in cores["group"].unique(maintain_order=True).to_list():
        part = cores.filter(pl.col("group") == group)
        fig.add_bar(
            x=part["core"].to_list(),
            y=(part["memory_bytes"] / 1024).to_list(),
            name=group,
            marker_color=GROUP_COLORS.get(group),
            customdata=np.stack([part["layer"].to_numpy(), part["neurons"].to_numpy(), part["chip"].to_numpy()], axis=1),
            hovertemplate="core %{x}<br>layer %{customdata[0]}<br>%{customdata[1]} neurons<br>chip %{customdata[2]}<br>%{y:.1f} "
            "KiB<extra></extra>",
        )
    fig.add_hline(y=sram_bytes / 1024, line_dash="dash", line_color="#d62728", annotation_text="core SRAM")
    fig.update_layout(bargap=0.05)
    return _layout(fig, "Memory per neuro-core (KiB), by neuron group", "core", "KiB", height=420)


ENERGY_PARTS = (("static_uj", "static (idle power x time)", "#bbbbbb"), ("synops_uj", "synaptic ops", "#1f77b4"),
                ("neuron_uj", "neuron updates", "#ff7f0e"), ("message_uj", "messages", "#2ca02c"))


def estimate_figure(per_token: pl.DataFrame) -> go.Figure:
    """Energy (top) and latency (bottom) per generated token, each on its own axes.

    Why two panels: static energy is idle power times latency, so with two y axes on one plot the
    energy line lands exactly on the latency line and hides it.
    """
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=("energy per token (µJ)", "latency per token (µs)"),
    )
    fig.add_scatter(
        x=per_token["token"].to_list(), y=per_token["energy_uj"].to_list(), mode="lines+markers", name="energy (µJ)",
        line_color="#d62728", row=1, col=1,
    )
    fig.add_scatter(
        x=per_token["token"].to_list(), y=per_token["latency_us"].to_list(), mode="lines+markers", name="latency (µs)",
        line_color="#1f77b4", row=2, col=1,
    )
    _layout(fig, "Estimated energy and latency per token (generation)", "", "", height=480)
    fig.update_yaxes(title_text="µJ", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="µs", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="token", row=2, col=1)
    return fig


def energy_breakdown_figure(per_group: pl.DataFrame, by: str = "layer") -> go.Figure:
    """Energy per generated token, stacked by kind (static, synaptic ops, neuron updates, messages),
    per layer or per neuron group (summed over layers)."""
    key = "layer" if by == "layer" else "group"
    agg = per_group.group_by(key, maintain_order=True).agg(pl.col(c for c, _, _ in ENERGY_PARTS).sum())
    if key == "layer":
        agg = agg.sort("layer")
        labels = ["final" if v == -1 else f"layer {v}" for v in agg["layer"].to_list()]
    else:
        labels = agg["group"].to_list()
    fig = go.Figure(
        [go.Bar(x=labels, y=agg[column].to_list(), name=name, marker_color=color) for column, name, color in ENERGY_PARTS],
    )
    fig.update_layout(barmode="stack")
    return _layout(fig, f"Energy per generated token by {key} (µJ)", key, "µJ")


def stage_time_figure(per_group: pl.DataFrame) -> go.Figure:
    """Mean stage time of every (layer, group): the busiest core of a stage sets its time."""
    fig = go.Figure()
    for group in per_group["group"].unique(maintain_order=True).to_list():
        part = per_group.filter(pl.col("group") == group).sort("layer")
        fig.add_bar(
            x=part["layer"].to_list(), y=(part["stage_ns"] * 1e-3).to_list(), name=group, marker_color=GROUP_COLORS.get(group),
        )
    fig.update_layout(barmode="stack")
    return _layout(fig, "Time per token in each stage (µs), stacked per layer", "layer (-1: final norm)", "µs")


def context_length_figure(
    table: pl.DataFrame, crossovers: dict[str, float | None], paper_points: list[dict] | None = None,
) -> go.Figure:
    """Tokens/s (top) and mJ/token (bottom) against context length, one line per system
    (`inspector.chip.context_length.context_table`), a dotted line where the transformer crosses our
    estimate (when it does within the plotted range), and the paper's reported points as markers.

    paper_points: dicts with system, context_tokens, tokens_per_s, mj_per_token and optional
    *_low / *_high for a reported range.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("tokens/s (generation)", "energy per token (mJ)"))
    colors = {}
    for index, system in enumerate(table["system"].unique(maintain_order=True).to_list()):
        part = table.filter(pl.col("system") == system).sort("context_tokens")
        colors[system] = series_color(index)
        for row, column in ((1, "tokens_per_s"), (2, "mj_per_token")):
            fig.add_scatter(
                x=part["context_tokens"].to_list(), y=part[column].to_list(), mode="lines", name=system, legendgroup=system,
                showlegend=row == 1, line_color=colors[system], row=row, col=1,
            )
    for index, point in enumerate(paper_points or []):
        color = series_color(len(colors) + index)
        for row, column in ((1, "tokens_per_s"), (2, "mj_per_token")):
            low, high = point.get(f"{column}_low"), point.get(f"{column}_high")
            error = None if low is None else dict(
                type="data", symmetric=False, array=[high - point[column]], arrayminus=[point[column] - low],
            )
            fig.add_scatter(
                x=[point["context_tokens"]], y=[point[column]], error_y=error, mode="markers", marker_symbol="diamond",
                marker_size=10, marker_color=color, name=point["system"], legendgroup=point["system"], showlegend=row == 1,
                row=row, col=1,
            )
    low, high = table["context_tokens"].min(), table["context_tokens"].max()
    for row, column in ((1, "tokens_per_s"), (2, "mj_per_token")):
        at = crossovers.get(column)
        if at is not None and low <= at <= high:
            fig.add_vline(x=at, line_dash="dot", line_color="#d62728", row=row, col=1,
                          annotation_text=f"crossover {at:,.0f} tokens")
    _layout(fig, "Per-token cost against context length", "", "", height=560)
    # three rows of legend would cover the top panel's title: the legend goes below the plot
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0), margin=dict(t=60, b=160))
    fig.update_xaxes(type="log", title_text="context (tokens)", row=2, col=1)
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title_text="tokens/s", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", title_text="mJ/token", row=2, col=1)
    return fig
