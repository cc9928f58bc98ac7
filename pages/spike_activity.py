"""Spike activity: messages and synaptic operations of every emulated neuro-core, token by token."""

from __future__ import annotations

import polars as pl
import streamlit as st

from inspector import schema as S
from inspector.compare.messaging import change_raster, mode_comparison
from inspector.quant import messaging
from inspector.ui.export import chart, table_downloads
from inspector.ui.runs import page_analysis
from inspector.views.exports import TABLE_NOTES
from inspector.views.figures import activity_heatmap, messaging_figure, raster_figure, sparsity_figure, synops_figure

st.title("Spike activity")
session, analysis = page_analysis()
activity = analysis.tables["activity"]
cores = analysis.tables["cores"]
st.caption(
    "On Loihi 2 a neuron that outputs a nonzero value sends a message (a graded spike carrying the value) to each "
    "group of neurons it feeds; a zero sends nothing and costs nothing. Most neurons feed one group and send one "
    "message, but each neuron of an attention-norm core feeds the i, f and g projections with separately quantized "
    "values and can send up to three per token: the counts below are messages, not neurons. Each message then costs "
    "one synaptic operation per stored synapse it reaches. These counts come from the integer model's actual "
    f"values, as computed by the {session.backend.label} backend. A token crosses the fused neuron groups of the "
    "layer stack one after the other, one time step per group; every count here is per token."
)
per_token = analysis.activity_per_token()
c1, c2, c3 = st.columns(3)
c1.metric("Messages per token", f"{per_token['messages']:,.0f}")
c2.metric("Synaptic ops per token", f"{per_token['synops']:,.0f}")
c3.metric("Neurons silent per token", f"{per_token['silent_share']:.1%}")

st.subheader("Dense and event-driven")
comparison = mode_comparison(analysis.run.probe, activity)
run_label = messaging.describe(session.qc)
dense_total, change_total = float(comparison["dense"].sum()), float(comparison["changes"].sum())
st.caption(
    "A neuron can send its code on every token (dense) or, as Loihi 2's sigma-delta neurons "
    "(Lava's `lava.proc.sdn`), only the *change* since what its receivers last got, when the change reaches a "
    "threshold vth; the receivers add up what arrives (into a BitLinear, W times the sum of the changes). At vth = 0 "
    "the outputs are bit-identical to dense and only neurons whose code changed send. Counted here from this run's "
    f"codes over tokens of the per-neuron window ({int(comparison['tokens'].max())} tokens). This run's messaging: "
    f"**{run_label}** (sidebar: QuantConfig overrides, Event-driven messaging)."
)
c1, c2, c3 = st.columns(3)
c1.metric("Dense messages per token", f"{dense_total:,.0f}", help="every sending group: every nonzero code")
c2.metric(
    "Messages that carry a change", f"{change_total:,.0f}",
    delta=f"{change_total / max(dense_total, 1) - 1:+.1%}", delta_color="inverse",
    help="sigma-delta at vth = 0: the same outputs, only codes that changed are sent",
)
c3.metric("This run", f"{float(comparison['this_run'].sum()):,.0f}", help=run_label)
chart(messaging_figure(comparison, run_label), "messaging_modes")

by = st.segmented_control("Heatmap rows", ["core", "layer"], default="layer", key="heat_by") or "layer"
value = st.segmented_control("Count", ["messages", "synops"], default="messages", key="heat_value") or "messages"
chart(activity_heatmap(activity, by=by, value=value), f"activity_{by}_{value}")
a, b = st.columns(2)
with a:
    chart(sparsity_figure(activity), "sparsity")
with b:
    chart(synops_figure(activity, analysis.prompt_tokens), "synops")

st.subheader("Raster of one core")
layer_options = sorted(cores["layer"].unique().to_list())
c1, c2, c3 = st.columns(3)
layer = c1.selectbox(
    "Layer", layer_options, index=layer_options.index(0) if 0 in layer_options else 0,
    format_func=lambda v: "final norm" if v == -1 else str(v), key="raster_layer",
)
groups = cores.filter(pl.col("layer") == layer)["group"].unique(maintain_order=True).to_list()
group = c2.selectbox("Neuron group", groups, index=groups.index(S.MLGRU) if S.MLGRU in groups else 0, key="raster_group")
core_ids = cores.filter((pl.col("layer") == layer) & (pl.col("group") == group))["core"].to_list()
core = c3.selectbox("Core", core_ids, key="raster_core")
row = cores.filter(pl.col("core") == core).row(0, named=True)
shown = st.segmented_control(
    "Raster shows", ["messages sent (this run)", "code changes (delta, vth = 0)"], default="messages sent (this run)",
    key="raster_what",
) or "messages sent (this run)"
if shown.startswith("code changes"):
    changes, first = change_raster(analysis.run.probe, layer, group)
    messages, what = changes[:, row["start"] : row["end"]], "Code changes"
else:
    messages, first, what = analysis.run.probe.core_messages(core), analysis.run.probe.window_start, "Raster"
st.caption(
    f"Tokens {first}-{first + messages.shape[0] - 1} (the sidebar's 'Per-neuron detail' chooses which tokens keep a raster).",
)
chart(raster_figure(messages, core, row["start"], group, layer, first_token=first, what=what), "raster")
st.subheader("Activity table")
table_downloads(activity, "activity", TABLE_NOTES["activity"])
