"""Hardware: the paper's measured Loihi 2 system, our estimate calibrated against it, the core map, what moves the estimate."""

from __future__ import annotations

import streamlit as st

from inspector.chip.activity_cache import estimated_measure_seconds
from inspector.chip.context_length import CONTEXTS, context_table, crossovers
from inspector.chip.costs import FITTED_NAME, PRESETS
from inspector.chip.estimate import DEFAULT_PROMPT_TOKENS
from inspector.chip.fit import FitTable, single_chip, single_chip_table
from inspector.chip.fit import figures as fit_figures
from inspector.chip.mapper import LM_HEAD, MappingError, lm_head_group
from inspector.chip.paper import (
    LM_HEAD_CHIPS_PAPER,
    PAPER,
    PAPER_NOTE,
    context_points,
    estimate_figures,
    measured_table,
    ratios,
    residual_table,
    statements_table,
)
from inspector.chip.report import (
    density_summary,
    evaluate,
    export_names,
    matching_published,
    readable_seconds,
    results_table,
    what_if_table,
)
from inspector.disk_cache import cache_dir
from inspector.errors import InspectorError
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.ui.export import chart, table_downloads, thousands
from inspector.ui.hardware import (
    cached_published_evaluation,
    cached_what_ifs,
    cost_preset,
    follow_measurement,
    gpu_baseline,
    layout_choice,
    measure_button,
    measurement_job,
    transformer_baseline,
    what_if_hardware,
)
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import backend_for
from inspector.views.figures import (
    context_length_figure,
    core_map_figure,
    energy_breakdown_figure,
    estimate_figure,
    stage_time_figure,
)

PERCENT = {"residual (%)": st.column_config.NumberColumn(format="%+.2f %%")}


@st.cache_resource(show_spinner=False)
def pinned_fit_table() -> FitTable:
    return FitTable.load()


st.title("Hardware")
session, analysis = page_analysis()
backend = backend_for(session)

# -- the measurement ----------------------------------------------------------------------------
st.subheader("The paper's Loihi 2 system, as reported")
st.caption(
    f"{PAPER}: MMfreeLM-370M measured on 24 chips of a 32-chip Loihi 2 system, one block per chip, embedding and LM head on "
    "the host, batch 1, system power; transformers in FP16 on a Jetson Orin Nano 8GB. Figures as reported (Tables 1-3)."
)
st.dataframe(measured_table(), hide_index=True, width="stretch")
with st.expander("The paper's other statements: single chip, context length, H100, accuracy"):
    st.dataframe(statements_table(), hide_index=True, width="stretch")
st.info(PAPER_NOTE)

# -- the fit ------------------------------------------------------------------------------------
st.subheader("Our estimate, fitted to that measurement")
fit_table = pinned_fit_table()
fitted = PRESETS[FITTED_NAME]
residuals = residual_table(fit_figures(fit_table, fitted.costs))
st.caption(
    f"Preset **{FITTED_NAME}**: four constants (synchronization floor, a scale on per-operation times, static power per chip, "
    "a scale on per-operation energies) fitted by least squares to the five measured figures, with this project's own "
    f"measured activity of the 370M configuration (random weights, default QuantConfig, pinned) mapped one block per chip: "
    f"{fit_table.chips} chips, {fit_table.steps_per_token} time steps per token and "
    f"{fit_table.crossings} chip crossings from the core map, not fitted."
)
st.dataframe(residuals, hide_index=True, width="stretch", column_config=PERCENT)
with st.expander("The fitted constants, each beside the public figure it can be compared with", expanded=True):
    st.dataframe(fitted.table(), hide_index=True, width="stretch")
held_out = single_chip(fit_table, fitted.costs)
st.markdown("**Held out of the fit: one chip.** The same stages with every core on one chip (one chip's static power and "
            "synchronization floor, no crossings), beside the paper's single-chip estimate; not tuned.")
st.dataframe(single_chip_table(fit_table, fitted.costs), hide_index=True, width="stretch")
st.caption(
    f"Ours: {held_out['gen_tps']:,.0f} tokens/s, {held_out['gen_mj']:,.1f} mJ/token. With one chip the floor shrinks to the "
    "in-chip barrier, so the busiest cores set the pace, and only one chip draws static power; the paper's 59 mJ/token at "
    "71.3 tokens/s implies about 4.2 W for its single chip, far above the 0.7 W per chip the 24-chip measurement implies, "
    "so its single-chip estimate rests on assumptions the five measured figures do not contain. "
    "Five figures fix only a few constants: the energies per synaptic op, neuron update and message cannot be told apart "
    "(one scale), and the floor's growth with chips is taken from the first Loihi's barrier figures, not measured."
)

# -- settings -----------------------------------------------------------------------------------
st.subheader("Settings")
layout, lm_on_chip = layout_choice()
with st.expander("Mapping what-ifs: synapse bits, shared cores, per-core limits", expanded=False):
    st.caption("Defaults and their sources: inspector/chip/limits.py. Every figure below follows these settings.")
    hw, share = what_if_hardware()
    if hw is not None:
        st.dataframe(hw.table(), hide_index=True, width="stretch")
with st.expander("Per-operation costs (every number with its source)", expanded=False):
    preset = cost_preset()
    if preset is not None:
        st.dataframe(preset.table(), hide_index=True, width="stretch")
    st.caption(
        "Static power: what a chip draws whatever it does, paid by every chip of the map for the whole time a token takes.",
    )
prompt_value = st.number_input("Prompt length for time to first token (tokens)", value=DEFAULT_PROMPT_TOKENS, step=1,
                               key="ttft_prompt")
prompt_tokens = int(prompt_value) if 1 <= prompt_value <= 1_000_000 else None
if prompt_tokens is None:
    st.error(f"The prompt length must be 1 to 1,000,000 tokens, got {prompt_value:,}. The estimates wait for a valid length.")
ready = hw is not None and preset is not None and prompt_tokens is not None
if not ready:
    st.warning("The core map and the estimates below need valid settings (see the message above); the rest of the page works.")

# -- the loaded model ---------------------------------------------------------------------------
weights_label = (
    f"{session.loaded.name}: its weights, your prompt and generation "
    f"({analysis.prompt_tokens} + {len(analysis.run.tokens)} tokens)"
)
loaded, evaluations, missing = None, [], []
if ready:
    head = lm_head_group(session.loaded.config) if lm_on_chip else None
    try:
        loaded = evaluate(
            session.loaded.name, weights_label, backend.core_map.groups, analysis.run.probe.group_activity(), hw, share,
            preset.costs, prompt_tokens, layout, head,
        )
    except (MappingError, ValueError, InspectorError) as exc:
        st.error(f"Cannot map or estimate with these settings: {exc}")
if loaded is not None:
    core_map, est = loaded.core_map, loaded.estimate
    summary = core_map.summary()
    st.subheader(f"Core map of {session.loaded.name}")
    st.caption(
        "Each layer is split into fused neuron groups; each group's neurons are packed onto neuro-cores under the "
        "per-core limits (neurons, synapse memory, SRAM)"
        + (", groups of a layer sharing cores" if share else ", one group per core")
        + f"; layout: {layout}" + (", LM head on chip." if lm_on_chip else ", LM head on the host.")
    )
    if core_map.oversized_blocks():
        st.info(core_map.oversized_blocks())
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
    st.caption(f"Costs: {preset.name}. Activity: {weights_label}. {est.steps_per_token} time steps per token, "
               f"{est.crossings} chip crossings, synchronization floor {est.sync_floor_ns / 1e3:,.2f} µs on {est.chips} chip(s).")
    c1, c2, c3 = st.columns(3)
    c1.metric("Generation, tokens/s", f"{est.generation.tokens_per_s:,.1f}")
    c2.metric("Generation, energy/token", f"{est.generation.energy_per_token_mj:,.3g} mJ")
    c3.metric("Static share of generation energy", f"{est.generation.static_mj / est.generation.energy_per_token_mj:.1%}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Prefill, tokens/s", f"{est.prefill.tokens_per_s:,.1f}")
    c2.metric("Prefill, energy/token", f"{est.prefill.energy_per_token_mj:,.3g} mJ")
    c3.metric(f"First token, {prompt_tokens:,}-token prompt", readable_seconds(est.time_to_first_token_s))
    st.dataframe(est.summary(), hide_index=True, width="stretch")
    by = st.radio("Energy breakdown by", ["layer", "group"], horizontal=True, key="breakdown_by")
    chart(energy_breakdown_figure(est.per_group, by), "energy_breakdown")
    chart(stage_time_figure(est.per_group), "stage_time")
    chart(estimate_figure(est.per_token), "estimate")
    with st.expander("Per layer and group table (µJ per token, ns per stage)"):
        st.dataframe(est.per_group, hide_index=True, width="stretch")
        table_downloads(est.per_group, "energy_per_group")
    evaluations.append(loaded)

# -- the published sizes ------------------------------------------------------------------------
st.subheader("Published sizes")
st.caption(
    "Activity of MMfreeLM-370M / 1.3B / 2.7B measured by running the published configuration with random weights "
    "(reference initialization; random token ids), one layer at a time: each layer is built, calibrated on the outputs "
    "of the layers before it, converted to integers, run with probes, and freed, so at most one layer is in memory. "
    "With the same weights this is bit for bit the whole-model emulator's activity. Measured once per QuantConfig and "
    f"cached in {cache_dir()} (`python -m inspector measure --config all` fills it from the command line). "
    "When the loaded checkpoint has a published configuration, its own run is used instead."
)
if ready:
    real = matching_published(session.loaded.config)
    for name in PUBLISHED_CONFIGS:
        try:
            if name == real:
                head = lm_head_group(session.loaded.config) if lm_on_chip else None
                evaluations.append(evaluate(
                    name, "the loaded checkpoint (real weights): " + weights_label, backend.core_map.groups,
                    analysis.run.probe.group_activity(), hw, share, preset.costs, prompt_tokens, layout, head,
                ))
                continue
            evaluation = cached_published_evaluation(name, session.qc, hw, share, preset.costs, prompt_tokens, layout, lm_on_chip)
        except MappingError as exc:
            st.error(f"{name} does not map with these limits: {exc}")
            continue
        except InspectorError as exc:  # e.g. an absurd number of chips under extreme limits
            st.error(f"{name}: cannot estimate with these settings: {exc}")
            continue
        if evaluation is None:
            missing.append(name)
        else:
            evaluations.append(evaluation)
            if evaluation.core_map.oversized_blocks():
                st.caption(f"{name}: {evaluation.core_map.oversized_blocks()}")
    if evaluations:
        results = results_table(evaluations)
        st.dataframe(results, hide_index=True, width="stretch", column_config=thousands(results))
        table_downloads(export_names(results), "estimates")
        heads = [e for e in evaluations if lm_on_chip and e.model.startswith("MMfreeLM")]
        for e in heads:
            chips = e.core_map.table.filter(e.core_map.table["group"] == LM_HEAD)["chip"].n_unique()
            st.caption(f"{e.model}: the LM head takes {chips} chip(s) in this map (the paper estimates about "
                       f"{LM_HEAD_CHIPS_PAPER} for 370M).")
    for name in missing:
        seconds = estimated_measure_seconds(HGRNBitConfig(**PUBLISHED_CONFIGS[name]))
        left, right = st.columns([3, 1])
        try:
            density = density_summary(name, hw, share, layout, lm_on_chip)
            left.info(
                f"{name} has not been measured for this QuantConfig yet (core map from the typical 69% ternary density: "
                f"{density['cores']:,} cores, {density['chips']} chips). "
                f"Measuring takes about {seconds // 60 + 1} min on one core."
            )
        except MappingError as exc:
            left.error(f"{name} does not map with these limits: {exc}")
        job = measurement_job(name, session.qc)
        if job is not None:  # queued or running: its place or progress; finished: why it failed or that it was cancelled
            with left:
                follow_measurement(job, f"cancel_measure_{name}")
        measure_button(name, session.qc, right)

# -- what moves the estimate --------------------------------------------------------------------
st.subheader("What moves the estimate")
if preset is None:
    st.info("Waiting for valid costs (see the message under Settings).")
else:
    rows = cached_what_ifs("MMfreeLM-370M", session.qc, preset.costs, prompt_tokens or DEFAULT_PROMPT_TOKENS)
    if rows is None:
        st.info("Measure MMfreeLM-370M (above) to see what each change does to it.")
    else:
        reference = rows[0][1]
        # the other activities (this run, the other sizes) under this page's settings
        rows = rows + [(f"activity: {e.model}, this page's settings", e) for e in evaluations if e.weights != reference.weights]
        table = what_if_table(rows)
        st.caption(f"Costs: {preset.name}. Each row changes one thing against the first (MMfreeLM-370M, measured activity, "
                   f"{reference.estimate.chips} chips); the other models' rows follow the settings above.")
        st.dataframe(table, hide_index=True, width="stretch", column_config=thousands(table))
        table_downloads(export_names(table), "what_ifs")

# -- our figures beside the paper's and a GPU ------------------------------------------------------
PINNED_CHOICE = "MMfreeLM-370M, fitted preset (pinned activity, one block per chip)"
ours_by_name = {PINNED_CHOICE: fit_figures(fit_table, fitted.costs)}
ours_by_name |= {f"{e.model} ({e.core_map.layout}, {preset.name})": estimate_figures(e.estimate) for e in evaluations}
st.subheader("Per-token cost against context length")
choice = st.selectbox("Our estimate for", list(ours_by_name), key="paper_model")
ours = ours_by_name[choice]
st.caption(
    "Our estimate is flat: the recurrent state has a fixed size. A transformer reads its weights and its whole KV cache for "
    "every generated token, so at batch 1 its time per token grows with the context (a memory-bandwidth roofline; energy = "
    "power x time). Defaults: Qwen2.5-0.5B in FP16 on a Jetson Orin Nano 8GB; hover a field for its source."
)
gpu = transformer_baseline()
longest = st.select_slider("Longest context (tokens)", [16_000, 32_000, 64_000, 128_000, 256_000], value=16_000, key="ctx_max")
if gpu is not None:
    contexts = sorted({c for c in CONTEXTS if c <= longest} | {longest})
    table = context_table(ours["gen_tps"], ours["gen_mj"], gpu, contexts)
    cross = crossovers(ours["gen_tps"], ours["gen_mj"], gpu)
    chart(context_length_figure(table, cross, context_points()), "context_length")
    said = []
    for column, what in (("tokens_per_s", "tokens/s"), ("mj_per_token", "energy per token")):
        at = cross[column]
        said.append(f"{what}: the transformer is behind at every context" if at is None
                    else f"{what}: the transformer falls behind ours beyond {at:,.0f} tokens")
    st.caption("Crossover — " + "; ".join(said) + ".")

st.subheader("Ratios against a GPU baseline")
st.caption(
    "The baseline defaults to the paper's Jetson Orin Nano figures, the best of each reported range; edit them to compare with "
    "your own measurement. The paper's 24-chip figures against the same baseline are shown beside ours."
)
baseline = gpu_baseline()
if baseline is not None:
    st.dataframe(baseline.table(), hide_index=True, width="stretch")
    st.dataframe(ratios(ours, baseline), hide_index=True, width="stretch")
    if prompt_tokens is not None and prompt_tokens != DEFAULT_PROMPT_TOKENS and choice != PINNED_CHOICE:
        st.caption(f"The paper's time to first token is for a {DEFAULT_PROMPT_TOKENS}-token prompt; ours uses {prompt_tokens}.")
