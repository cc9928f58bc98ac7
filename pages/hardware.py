"""Hardware: how the model maps onto Loihi 2 and what that would cost, from the measured activity."""

from __future__ import annotations

import dataclasses

import polars as pl
import streamlit as st

from inspector.emulator.mapper import published_summaries
from inspector.estimate import PAPER_FIGURES, OpCosts, estimate
from inspector.figures import core_map_figure, estimate_figure
from inspector.ui.export import chart, table_downloads, thousands
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import emulator_for

st.title("Hardware")
session, analysis = page_analysis()
emulator = emulator_for(session)
core_map = emulator.core_map
summary = core_map.summary()
st.caption(
    "Each layer is split into fused neuron groups; each group's neurons are packed onto neuro-cores "
    "under the per-core limits (neurons, synapse memory, SRAM). The limits and their sources are in "
    "inspector/emulator/hardware.py."
)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Neuro-cores", f"{summary['cores']:,}")
c2.metric("Loihi 2 chips", summary["chips"])
c3.metric("Synapses (nonzero ternary)", f"{summary['synapses']:,}")
c4.metric("Max memory per core", f"{summary['max_memory_bytes_per_core'] / 1024:.1f} KiB")
chart(core_map_figure(core_map.table, core_map.hardware.core_sram_bytes), "core_map")
with st.expander("Core map table"):
    st.dataframe(core_map.table, hide_index=True, width="stretch", column_config=thousands(core_map.table))
    table_downloads(core_map.table, "cores")

st.subheader("Published model sizes on the same mapper")
published = pl.DataFrame(list(published_summaries(core_map.hardware))).select("model", "cores", "chips", "synapses")
st.dataframe(published, hide_index=True, width="stretch", column_config=thousands(published))
st.caption("Published configurations use random weights' typical ternary density (69% nonzero).")

st.subheader("Estimated throughput and energy")
with st.expander("Per-operation costs (editable)"):
    defaults = OpCosts()
    costs = OpCosts(**{
        f.name: st.number_input(f.name, value=float(getattr(defaults, f.name)), min_value=0.0, key=f"cost_{f.name}")
        for f in dataclasses.fields(OpCosts)
    })
    st.caption("Defaults: Loihi (first generation) measurements, Davies et al., IEEE Micro 2018; ~1 W static per chip. See inspector/estimate.py.")
est = estimate(analysis.tables["activity"], core_map.chips, costs)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Generation, tokens/s", f"{est.generation_tokens_per_s:,.0f}")
c2.metric("Prefill, tokens/s (pipelined)", f"{est.prefill_tokens_per_s:,.0f}")
c3.metric("Latency per token", f"{est.latency_per_token_ms:.3f} ms")
c4.metric("Energy per token", f"{est.energy_per_token_mj:.4f} mJ")
chart(estimate_figure(est.per_token), "estimate")
st.markdown("**The paper's published figures** (arXiv 2503.18002, MMfreeLM-370M on Loihi 2), for comparison:")
st.dataframe(pl.DataFrame({"measure": [m for m, _ in PAPER_FIGURES], "reported": [v for _, v in PAPER_FIGURES]}), hide_index=True, width="stretch")
st.caption("Our estimate is for the selected model and its measured activity; the paper's figures are for the 370M model on real hardware.")
