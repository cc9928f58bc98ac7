"""State saturation: fixed-point values against the range their registers can hold."""

from __future__ import annotations

import polars as pl
import streamlit as st

from inspector.figures import saturation_rate_figure, state_histogram_figure
from inspector.ui.export import chart, table_downloads
from inspector.ui.runs import page_analysis

st.title("State saturation")
session, analysis = page_analysis()
qc = session.qc
saturation = analysis.tables["saturation"]
states = analysis.tables["states"]
saturated = analysis.tables["saturated_neurons"]
st.caption(
    f"Every value on the chip lives in a fixed-width register: the MLGRU state in {qc.state_bits} bits, "
    f"block activations in {qc.act_bits} bits, values inside the mixers in {qc.internal_bits} bits, the residual "
    f"stream in {qc.residual_bits} bits. A value beyond the "
    "range is clipped (saturated), never wrapped, and counted here. Change a bit width under "
    "'QuantConfig overrides' in the sidebar to see the effect."
)
total_clipped = int(saturation["clipped"].sum())
total_values = int(saturation["values"].sum())
c1, c2, c3 = st.columns(3)
c1.metric("Clipped values", f"{total_clipped:,}")
c2.metric("Of all values", f"{total_clipped / max(total_values, 1):.4%}")
state_rows = saturation.filter(pl.col("kind") == "state")
c3.metric("Clipped MLGRU states", f"{int(state_rows['clipped'].sum()):,}")

layers = sorted(states["layer"].unique().to_list())
c1, c2 = st.columns(2)
layer = c1.selectbox("Layer", layers, key="sat_layer")
mlgru_cores = analysis.tables["cores"].filter((pl.col("layer") == layer) & (pl.col("group") == "mlgru"))
core_labels = {"all": "all cores of the layer"} | {
    str(r["core"]): f"core {r['core']} (neurons {r['start']}-{r['end'] - 1})" for r in mlgru_cores.iter_rows(named=True)
}
core = c2.selectbox("MLGRU core", list(core_labels), format_func=core_labels.get, key="sat_core")
layer_states = states.filter(pl.col("layer") == layer)
where = f"layer {layer}"
if core != "all":
    row = mlgru_cores.filter(pl.col("core") == int(core)).row(0, named=True)
    layer_states = layer_states.filter(pl.col("neuron").is_between(row["start"], row["end"] - 1))
    where += f", core {core}"
a, b = st.columns(2)
with a:
    codes = layer_states["code"].to_numpy()
    chart(state_histogram_figure(codes, qc.state_bits, f"MLGRU state codes ({where}) vs the {qc.state_bits}-bit range"), "state_hist")
with b:
    chart(saturation_rate_figure(saturation), "saturation_rate")

st.subheader("Per layer and site")
per_site = (
    saturation.group_by(["layer", "site", "kind"]).agg(pl.col("clipped").sum(), pl.col("values").sum())
    .with_columns((pl.col("clipped") / pl.col("values")).alias("rate"))
    .sort(["clipped", "layer"], descending=[True, False])
)
st.dataframe(per_site, hide_index=True, width="stretch")
st.subheader("Neurons that saturate most")
if saturated.height:
    top = saturated.group_by(["layer", "site", "neuron"]).agg(pl.len().alias("times_clipped"), pl.col("code").first()).sort("times_clipped", descending=True).head(50)
    st.dataframe(top, hide_index=True, width="stretch")
    table_downloads(saturated, "saturated_neurons")
else:
    st.success("No value was clipped in this run.")
