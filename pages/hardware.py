"""Hardware: how the model maps onto Loihi 2, what that would cost per token, and the paper beside it."""

from __future__ import annotations

import streamlit as st

from inspector.activity_cache import cache_dir, estimated_measure_seconds
from inspector.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.emulator.hardware import HardwareConfigError
from inspector.emulator.mapper import MappingError
from inspector.errors import InspectorError
from inspector.estimate import DEFAULT_PROMPT_TOKENS
from inspector.figures import core_map_figure, energy_breakdown_figure, estimate_figure, stage_time_figure
from inspector.hardware_report import density_summary, evaluate, matching_published, results_table
from inspector.paper import JETSON_ORIN_NANO_WATTS, JETSON_SOURCE, PAPER, PAPER_NOTE, GpuBaseline, ratios
from inspector.ui.export import chart, table_downloads, thousands
from inspector.ui.hardware import (
    cached_published_evaluation,
    cost_preset,
    follow_measurement,
    measure_button,
    measurement_job,
    what_if_hardware,
)
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import backend_for

st.title("Hardware")
session, analysis = page_analysis()
emulator = backend_for(session)

with st.expander("Mapping what-ifs: synapse bits, shared cores, per-core limits", expanded=False):
    st.caption("Defaults and their sources: inspector/emulator/hardware.py. Every figure below follows these settings.")
    try:
        hw, share = what_if_hardware()
    except HardwareConfigError as exc:
        st.error(f"These limits are not a valid core: {exc}")
        st.stop()
    st.dataframe(hw.table(), hide_index=True, width="stretch")
with st.expander("Per-operation costs (every number with its source)", expanded=False):
    preset = cost_preset()
    st.dataframe(preset.table(), hide_index=True, width="stretch")
    st.caption(
        "Static power means idle power (leakage, clocks), paid by every chip the map uses for the whole time a token takes.",
    )
prompt_tokens = int(
    st.number_input("Prompt length for time to first token (tokens)", 1, 100_000, DEFAULT_PROMPT_TOKENS, key="ttft_prompt"),
)

weights_label = (
    f"{session.loaded.name}: its weights, your prompt and generation "
    f"({analysis.prompt_tokens} + {len(analysis.run.tokens)} tokens)"
)
try:
    loaded = evaluate(
        session.loaded.name, weights_label, emulator.core_map.groups, analysis.run.probe.group_activity(), hw, share,
        preset.costs, prompt_tokens,
    )
except (MappingError, ValueError) as exc:
    st.error(f"Cannot estimate with these settings: {exc}")
    st.stop()
core_map, est = loaded.core_map, loaded.estimate
summary = core_map.summary()

st.subheader(f"Core map of {session.loaded.name}")
st.caption(
    "Each layer is split into fused neuron groups; each group's neurons are packed onto neuro-cores under the "
    "per-core limits (neurons, synapse memory, SRAM)" + (
        ", groups of a layer sharing cores." if share else ", one group per core."
    )
)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Neuro-cores", f"{summary['cores']:,}")
c2.metric("Loihi 2 chips", summary["chips"])
c3.metric("Synapses (nonzero ternary)", f"{summary['synapses']:,}")
c4.metric("Max memory per core", f"{summary['max_memory_bytes_per_core'] / 1024:.1f} KiB")
chart(core_map_figure(core_map.table, hw.core_sram_bytes), "core_map")
with st.expander("Core map table"):
    st.dataframe(core_map.table, hide_index=True, width="stretch", column_config=thousands(core_map.table))
    table_downloads(core_map.table, "cores")

st.subheader("Estimated time and energy per token")
st.caption(f"Costs: {preset.name}. Activity: {weights_label}.")
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Generation, tokens/s", f"{est.generation.tokens_per_s:,.1f}")
c2.metric("Generation, energy/token", f"{est.generation.energy_per_token_mj:.4g} mJ")
c3.metric("Prefill, tokens/s", f"{est.prefill.tokens_per_s:,.1f}")
c4.metric("Prefill, energy/token", f"{est.prefill.energy_per_token_mj:.4g} mJ")
c5.metric(f"First token, {prompt_tokens}-token prompt", f"{est.time_to_first_token_s * 1e3:.4g} ms")
st.metric("Static share of generation energy", f"{est.generation.static_mj / est.generation.energy_per_token_mj:.1%}")
st.dataframe(est.summary(), hide_index=True, width="stretch")
by = st.radio("Energy breakdown by", ["layer", "group"], horizontal=True, key="breakdown_by")
chart(energy_breakdown_figure(est.per_group, by), "energy_breakdown")
chart(stage_time_figure(est.per_group), "stage_time")
chart(estimate_figure(est.per_token), "estimate")
with st.expander("Per layer and group table (µJ per token, ns per stage)"):
    st.dataframe(est.per_group, hide_index=True, width="stretch")
    table_downloads(est.per_group, "energy_per_group")

st.subheader("Published sizes")
st.caption(
    "Activity of MMfreeLM-370M / 1.3B / 2.7B measured by running the published configuration with random weights "
    "(reference initialization; random token ids), one layer at a time: each layer is built, calibrated on the outputs "
    "of the layers before it, converted to integers, run with probes, and freed, so at most one layer is in memory. "
    "With the same weights this is bit for bit the whole-model emulator's activity. Measured once per QuantConfig and "
    f"cached in {cache_dir()} (`python -m inspector measure --config all` fills it from the command line). "
    "When the loaded checkpoint has a published configuration, its own run is used instead."
)
evaluations, missing = [loaded], []
real = matching_published(session.loaded.config)
for name in PUBLISHED_CONFIGS:
    if name == real:
        evaluations.append(
            evaluate(
                name, "the loaded checkpoint (real weights): " + weights_label, core_map.groups,
                analysis.run.probe.group_activity(), hw, share, preset.costs, prompt_tokens
            )
        )
        continue
    try:
        evaluation = cached_published_evaluation(name, session.qc, hw, share, preset.costs, prompt_tokens)
    except MappingError as exc:
        st.error(f"{name} does not map with these limits: {exc}")
        continue
    if evaluation is None:
        missing.append(name)
    else:
        evaluations.append(evaluation)
results = results_table(evaluations)
st.dataframe(results, hide_index=True, width="stretch", column_config=thousands(results))
table_downloads(results, "estimates")
for name in missing:
    seconds = estimated_measure_seconds(HGRNBitConfig(**PUBLISHED_CONFIGS[name]))
    left, right = st.columns([3, 1])
    try:
        density = density_summary(name, hw, share)
        left.info(
            f"{name} has not been measured for this QuantConfig yet (core map from the typical 69% ternary density: "
            f"{density['cores']:,} cores, {density['chips']} chips). Measuring takes about {seconds // 60 + 1} min on one core."
        )
    except MappingError as exc:
        left.error(f"{name} does not map with these limits: {exc}")
    job = measurement_job(name, session.qc)
    if job is not None:  # queued or running: its place or progress; finished: why it failed or that it was cancelled
        with left:
            follow_measurement(job, f"cancel_measure_{name}")
    measure_button(name, session.qc, right)

st.subheader("Beside the paper: ratios against a GPU baseline")
st.warning(PAPER_NOTE)
st.caption(
    f"{PAPER}. The paper reports ratios, not absolute figures, so this compares ratios: give the GPU baseline's "
    "tokens/s and time to first token (the paper's are in its results; we could not verify them offline, so there is "
    "no default) and its power."
)
options = results["model"].to_list()
choice = st.selectbox(
    "Our estimate for", options, index=options.index("MMfreeLM-370M") if "MMfreeLM-370M" in options else 0, key="paper_model",
)
row = next(e for e in evaluations if e.model == choice)
b1, b2, b3 = st.columns(3)
base_tps = b1.number_input("Baseline tokens/s (generation)", min_value=0.0, value=0.0, key="base_tps", help="0 = not given")
base_w = b2.number_input("Baseline power (W)", min_value=0.1, value=JETSON_ORIN_NANO_WATTS, key="base_w", help=JETSON_SOURCE)
base_ttft = b3.number_input(
    f"Baseline time to first token (s, {prompt_tokens}-token prompt)", min_value=0.0, value=0.0, key="base_ttft",
    help="0 = not given",
)
try:
    baseline = GpuBaseline(base_tps or None, float(base_w), base_ttft or None)
except InspectorError as exc:
    st.error(str(exc))
    st.stop()
st.dataframe(baseline.table(), hide_index=True, width="stretch")
table = ratios(row.estimate, baseline)
st.dataframe(table, hide_index=True, width="stretch")
if prompt_tokens != DEFAULT_PROMPT_TOKENS:
    st.caption(f"The paper's time-to-first-token ratio is for a {DEFAULT_PROMPT_TOKENS}-token prompt; ours uses {prompt_tokens}.")
if baseline.tokens_per_s is None or baseline.ttft_s is None:
    st.info("Enter the baseline's tokens/s and time to first token to compute our ratios.")
