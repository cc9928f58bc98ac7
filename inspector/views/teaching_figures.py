"""Figures of the Learn tour: the data-flow map and the charts of its steps (plain functions of data).

Kept apart from `inspector.views.figures` (the other pages' charts) so the tour can change its pictures
without touching theirs. Every chart says what its colours mean, in a legend or in its labels.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from inspector import schema as S
from inspector.views.figures import GROUP_COLORS, LEGEND_TOP, _layout, series_color

# -- the data-flow map ------------------------------------------------------------------------------
# One layer of the model, in data-flow order: (node id, label, where it runs). The layer's box holds
# what runs on the chip; embedding and LM head run on the host.
FLOW_NODES: tuple[tuple[str, str, str], ...] = (
    ("embedding", "embedding\n(lookup)", "host"),
    (S.ATTN_NORM, "RMSNorm", "chip"),
    ("ifg_proj", "i, f, g\nprojections", "chip"),
    (S.MLGRU, "MLGRU\nh = f·h + i", "chip"),
    ("swish_gate", "g_norm ·\nswish(h)", "chip"),
    (S.O_PROJ, "o\nprojection", "chip"),
    (S.RESIDUAL_ATTN, "+ residual", "chip"),
    (S.MLP_NORM, "RMSNorm", "chip"),
    (S.GATE_PROJ, "gate, y\nprojection", "chip"),
    (S.GLU, "GLU\nsilu(gate)·y", "chip"),
    (S.DOWN_PROJ, "down\nprojection", "chip"),
    (S.RESIDUAL_MLP, "+ residual", "chip"),
    (S.FINAL_NORM, "final\nRMSNorm", "chip"),
    (S.LM_HEAD, "LM head\n(dense)", "host"),
)
PROJECTION_NODES = ("ifg_proj", S.O_PROJ, S.GATE_PROJ, S.DOWN_PROJ)
LAYER_NODES = tuple(n for n, _, _ in FLOW_NODES[1:12])
HIGHLIGHT = "#ffcc33"


def flow_map_dot(highlight: tuple[str, ...] = ()) -> str:
    """Graphviz DOT of one layer's data flow, `highlight`ed nodes filled yellow.

    Two rows, read as a snake (left to right, then right to left), so the labels stay readable in
    the width of a page: the token mixer on top, the channel mixer below. Host nodes are grey
    boxes, chip nodes white rounded boxes; the residual skips are dashed."""
    unknown = set(highlight) - {n for n, _, _ in FLOW_NODES}
    if unknown:
        raise ValueError(f"unknown flow-map nodes: {sorted(unknown)}")

    def node(name: str, label: str, where: str) -> str:
        fill = HIGHLIGHT if name in highlight else ("#e8e8e8" if where == "host" else "white")
        width = "2.5" if name in highlight else "1"
        text = html.escape(label).replace("\n", "<br/>")
        style = "filled" if where == "host" else '"rounded,filled"'
        return f'  {name} [label=<{text}>, fillcolor="{fill}", penwidth={width}, shape=box, style={style}];'

    order = [n for n, _, _ in FLOW_NODES]
    top, bottom = order[:7], order[7:]
    lines = [
        "digraph flow {",
        '  rankdir=LR; nodesep=0.12; ranksep=0.22; bgcolor="transparent"; newrank=true; size="11,1.45";',
        '  node [fontname="Helvetica", fontsize=12, margin="0.06,0.02", height=0.36, width=1.0];',
        '  edge [arrowsize=0.6, color="#555555"];',
    ]
    lines += [node(*n) for n in FLOW_NODES]
    # rows: the top row left to right, the bottom row drawn right to left under it (column k under column 6 - k)
    for k in range(7):
        lines.append(f"  {{rank=same; {top[k]}; {bottom[6 - k]};}}")
    lines += [f"  {a} -> {b};" for a, b in zip(top, top[1:], strict=False)]
    lines.append(f"  {top[-1]} -> {bottom[0]};")
    lines += [f"  {b} -> {a} [dir=back];" for a, b in zip(bottom, bottom[1:], strict=False)]
    lines.append('  embedding -> residual_attn [style=dashed, constraint=false, color="#999999"];')
    lines.append('  residual_attn -> residual_mlp [style=dashed, constraint=false, color="#999999"];')
    lines.append("}")
    return "\n".join(lines)


# -- step 1 ---------------------------------------------------------------------------------------
def weight_histogram_figure(counts: np.ndarray, edges: np.ndarray, beta: float, title: str) -> go.Figure:
    """Latent float weights, coloured by the ternary value they become (|w| < beta/2: 0, else ±1).

    The first and last bins also hold every weight beyond ±4·beta (the histogram's span)."""
    centers, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    value = np.where(centers < -beta / 2, -1, np.where(centers > beta / 2, 1, 0))
    fig = go.Figure()
    for v, color in ((-1, "#4c72b0"), (0, "#bbbbbb"), (1, "#dd8452")):
        pick = value == v
        fig.add_bar(
            x=centers[pick], y=counts[pick], width=widths[pick], marker_color=color, name=f"becomes {v:+d}" if v else "becomes 0"
        )
    for edge in (-beta / 2, beta / 2):
        fig.add_vline(x=edge, line_dash="dash", line_color="#d62728")
    fig.add_annotation(
        x=beta / 2, y=1, yref="paper", text="±β/2: rounding threshold", showarrow=False, xanchor="left", yanchor="top"
    )
    fig.add_annotation(x=edges[-1], y=float(counts[-1]), text="end bins: all |w| > 4β", showarrow=True, ax=-60, ay=-40)
    fig.update_layout(bargap=0)
    return _layout(fig, title, "latent float weight", "count")


# -- step 3 ---------------------------------------------------------------------------------------
def mlgru_figure(
    tokens: np.ndarray,
    h_float: np.ndarray,
    h_int: np.ndarray,
    forget: np.ndarray,
    neurons: list[int],
    layer: int,
) -> go.Figure:
    """Left: the state h of a few neurons over tokens (float line, integer dots); right: their forget
    gate f over the same tokens, in the same colour per neuron."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09)
    for index, n in enumerate(neurons):
        color = series_color(index)
        fig.add_scatter(
            x=tokens,
            y=h_float[:, n],
            mode="lines",
            name=f"neuron {n}: float h",
            line_color=color,
            legendgroup=str(n),
            row=1,
            col=1,
        )
        fig.add_scatter(
            x=tokens,
            y=h_int[:, n],
            mode="markers",
            name=f"neuron {n}: integer h",
            marker=dict(size=5, color=color),
            legendgroup=str(n),
            row=1,
            col=1,
        )
        fig.add_scatter(
            x=tokens,
            y=forget[:, n],
            mode="lines+markers",
            name=f"neuron {n}: f",
            line=dict(color=color, dash="dot"),
            marker=dict(size=4),
            legendgroup=str(n),
            row=1,
            col=2,
        )
    fig.update_yaxes(range=[0, 1.02], title_text="forget gate f (1: keep everything)", row=1, col=2)
    fig.update_xaxes(title_text="token", row=1, col=2)
    return _layout(
        fig, f"Layer {layer}: MLGRU state (left) and its forget gate (right), per neuron", "token", "state h", height=440
    )


# -- step 4 ---------------------------------------------------------------------------------------
ENCODING_COLORS = ("#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd")


def messaging_figure(totals: pl.DataFrame) -> go.Figure:
    """Synaptic operations per token into the ternary synapses, one bar per message encoding."""
    fig = go.Figure()
    for index, row in enumerate(totals.iter_rows(named=True)):
        fig.add_bar(
            x=[row["encoding"]],
            y=[row["synops_per_token"]],
            name=row["encoding"],
            marker_color=ENCODING_COLORS[index % 4],
            text=[f"{row['share_of_every_neuron']:.0%} of every neuron's"],
            textposition="outside",
        )
    fig.update_layout(showlegend=True, bargap=0.3)
    fig.update_yaxes(rangemode="tozero")
    return _layout(
        fig, "Synaptic ops per token into the ternary synapses, by how neurons send", "encoding", "synaptic ops per token"
    )


# -- steps 2 and 5: the sweeps --------------------------------------------------------------------
def sweep_figure(table: pl.DataFrame, x: str, series: dict[str, str], title: str, highlight: int | None = None) -> go.Figure:
    """Shares (0-100%) against a bit width, one line per column of `series` ({column: label})."""
    fig = go.Figure()
    for index, (column, label) in enumerate(series.items()):
        fig.add_scatter(
            x=table[x].to_list(),
            y=table[column].to_list(),
            mode="lines+markers+text",
            name=label,
            line_color=series_color(index),
            text=[f"{v:.0%}" for v in table[column].to_list()],
            textposition="bottom center" if index == 0 else "top center",
        )
    if highlight is not None:
        fig.add_vline(x=highlight, line_dash="dot", line_color="#555555", annotation_text="your setting")
    fig.update_xaxes(autorange="reversed", tickvals=table[x].to_list())
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    return _layout(fig, title, x.replace("_", " "), "share")


# -- step 6 ---------------------------------------------------------------------------------------
def kl_legend_figure(tokens: pl.DataFrame, prompt_tokens: int = 0) -> go.Figure:
    """KL(float || integer) per token, green where both models pick the same top-1 token, red where not,
    as two legend entries."""
    fig = go.Figure()
    for agree, color, label in ((True, "#2ca02c", "same top-1 token"), (False, "#d62728", "different top-1 token")):
        part = tokens.filter(pl.col("agree") == agree)
        fig.add_bar(x=part["token"].to_list(), y=part["kl"].to_list(), marker_color=color, name=label, width=0.8)
    if prompt_tokens:
        fig.add_vline(x=prompt_tokens - 0.5, line_dash="dot", annotation_text="generation starts")
    fig.update_layout(barmode="overlay", showlegend=True)
    return _layout(fig, "KL(float || integer) of the next-token distribution, per token", "token", "KL (nats)")


# -- step 7 ---------------------------------------------------------------------------------------
def layer_cores_figure(cores: pl.DataFrame, synapse_memory_bytes: int, sram_bytes: int, layer: int) -> go.Figure:
    """Memory per neuro-core of one layer, coloured by neuron group, against the synapse memory and
    the core's SRAM."""
    part = cores.filter(pl.col("layer") == layer)
    fig = go.Figure()
    for group in part["group"].unique(maintain_order=True).to_list():
        g = part.filter(pl.col("group") == group)
        fig.add_bar(
            x=[f"core {c}" for c in g["core"].to_list()],
            y=(g["memory_bytes"] / 1024).to_list(),
            name=group,
            marker_color=GROUP_COLORS.get(group),
        )
    fig.add_hline(
        y=synapse_memory_bytes / 1024,
        line_dash="dash",
        line_color="#d62728",
        annotation_text=f"synapse memory {synapse_memory_bytes // 1024} KiB (assumed)",
        annotation_position="top left",
    )
    fig.add_hline(
        y=sram_bytes / 1024,
        line_dash="dot",
        line_color="#555555",
        annotation_text=f"core SRAM {sram_bytes // 1024} KiB",
        annotation_position="top left",
    )
    fig.update_yaxes(range=[0, sram_bytes / 1024 * 1.12])
    return _layout(fig, f"Layer {layer} on neuro-cores: memory per core, coloured by neuron group", "core", "KiB", height=400)


# -- step 8 ---------------------------------------------------------------------------------------
def energy_share_figure(rows: list[dict]) -> go.Figure:
    """Static vs dynamic share of the energy per generated token, one bar per system; each row:
    {"system", "static_mj", "dynamic_mj"}. Shares, since the systems differ 100-fold in size."""
    fig = go.Figure()
    totals = [r["static_mj"] + r["dynamic_mj"] for r in rows]
    # the dynamic share is too thin a bar to hold its own label: it goes into the row's name
    systems = [
        f"{r['system']}<br>dynamic {r['dynamic_mj'] / t:.1%} ({r['dynamic_mj']:.3g} mJ)"
        for r, t in zip(rows, totals, strict=True)
    ]
    for key, label, color in (
        ("static_mj", "static (idle power × time)", "#bbbbbb"),
        ("dynamic_mj", "dynamic (work done)", "#1f77b4"),
    ):
        shares = [r[key] / t for r, t in zip(rows, totals, strict=True)]
        fig.add_bar(
            y=systems,
            x=shares,
            orientation="h",
            name=label,
            marker_color=color,
            text=[f"{s:.1%} ({r[key]:.3g} mJ)" for s, r in zip(shares, rows, strict=True)],
            textposition="inside",
            insidetextanchor="middle",
        )
    fig.update_layout(barmode="stack", legend=LEGEND_TOP)
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    return _layout(fig, "Energy per generated token: static vs dynamic", "share of the energy per token", "", height=300)


def local_cumulative_figure(table: pl.DataFrame, site: str, bits: int) -> go.Figure:
    """A site's SQNR per layer: its own rounding (local) beside everything it carries (cumulative)."""
    fig = go.Figure()
    for column, label, color in (
        ("local_sqnr_db", "local: this site's own rounding", "#1f77b4"),
        ("cumulative_sqnr_db", "cumulative: with every earlier error", "#d62728"),
    ):
        fig.add_bar(
            x=[f"layer {k}" for k in table["layer"].to_list()],
            y=table[column].to_list(),
            name=label,
            marker_color=color,
            text=[f"{v:.1f} dB" for v in table[column].to_list()],
            textposition="outside",
        )
    fig.update_layout(barmode="group")
    return _layout(fig, f"SQNR of {site} ({bits}-bit codes) per layer: local vs cumulative", "layer", "SQNR (dB)")
