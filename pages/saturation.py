"""State saturation: fixed-point values against the range their registers can hold, at both ends:
values clipped at the top, values that round to zero (underflow) at the bottom."""

from __future__ import annotations

import polars as pl
import streamlit as st

from inspector import schema as S
from inspector.ui.export import chart, table_downloads
from inspector.ui.runs import page_analysis
from inspector.views.figures import range_use_table, saturation_rate_figure, state_histogram_figure

st.title("State saturation")
session, analysis = page_analysis()
qc = session.qc
saturation = analysis.tables["saturation"]
states = analysis.tables["states"]
clips = analysis.tables["neuron_clips"]
st.caption(
    f"Every value on the chip lives in a fixed-width register: the MLGRU state in {qc.state_bits} bits, "
    f"block activations in {qc.act_bits} bits, values inside the mixers in {qc.internal_bits} bits, the residual "
    f"stream in {qc.residual_bits} bits. A value beyond the range is clipped (saturated), never wrapped. At the other "
    "end, a value smaller than half a step of its register rounds to code 0: it **underflows**, and is lost as surely "
    "as a clipped one (counted where the float model, run on the same tokens, has a nonzero value). "
    "Change a bit width or the state headroom under 'QuantConfig overrides' in the sidebar to see the effect."
)
totals = analysis.saturation_totals()
total_clipped, total_underflow = totals["clipped"], totals["underflow"]
c1, c2, c3, c4 = st.columns(4)
c1.metric(
    "Clipped values", f"{total_clipped:,}",
    help=f"{total_clipped / max(totals['values'], 1):.4%} of all {totals['values']:,} values",
)
c2.metric(
    "Underflowed values", f"{total_underflow:,}",
    help=f"{total_underflow / max(totals['compared_values'], 1):.4%} of the values with a float counterpart",
)
c3.metric("Clipped MLGRU states", f"{totals['state_clipped']:,}")
c4.metric(
    "MLGRU states at code 0",
    f"{totals['state_zero'] / max(totals['state_values'], 1):.1%}",
    help=f"{totals['state_underflow']:,} of them nonzero in the float model (underflow)",
)

layers = sorted(states["layer"].unique().to_list())
c1, c2 = st.columns(2)
layer = c1.selectbox("Layer", layers, key="sat_layer")
mlgru_cores = analysis.tables["cores"].filter((pl.col("layer") == layer) & (pl.col("group") == S.MLGRU))
core_labels = {"all": "all cores of the layer"} | {
    str(r["core"]): f"core {r['core']} (neurons {r['start']}-{r['end'] - 1})" for r in mlgru_cores.iter_rows(named=True)
}
core = c2.selectbox("MLGRU core", list(core_labels), format_func=core_labels.get, key="sat_core")
codes, where = analysis.state_codes(layer, None if core == "all" else int(core))
first, last = analysis.window_tokens
a, b = st.columns(2)
with a:
    title = f"MLGRU state codes ({where}, tokens {first}-{last}) vs the {qc.state_bits}-bit range"
    chart(state_histogram_figure(codes, qc.state_bits, title), "state_hist")
with b:
    chart(saturation_rate_figure(saturation), "saturation_rate")

st.subheader("Range used, per layer and site")
st.caption(
    "Over every token: how many values clipped and underflowed, and how many bits the largest |code| needed "
    "(sign included) out of the register's bits. A site that needs far fewer bits than it has wastes range; "
    "one with underflow needs a finer scale (more bits or less headroom)."
)
per_site = range_use_table(saturation).select(
    "layer", "site", "kind", "bits", "effective_bits", "clipped", "clipped_rate", "underflow", "underflow_rate", "zero_rate",
    "values"
).sort(["clipped", "underflow", "layer"], descending=[True, True, False], nulls_last=True)
st.dataframe(per_site, hide_index=True, width="stretch")
table_downloads(per_site, "range_use")
st.subheader("Neurons that saturate most")
if clips.height:
    top = clips.sort("times_clipped", descending=True).head(50)
    st.dataframe(top, hide_index=True, width="stretch")
    table_downloads(clips, "neuron_clips")
elif total_underflow:
    st.warning(
        f"No value was clipped in this run, but {total_underflow:,} values underflowed (rounded to 0 although the "
        "float model's value was not): see the table above for where."
    )
else:
    st.success("No value was clipped and none underflowed in this run.")
