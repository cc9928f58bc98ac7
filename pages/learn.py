"""Learn: a guided tour of how a MatMul-free LM computes on Loihi 2, step by step on the live model."""

from __future__ import annotations

import math

import polars as pl
import streamlit as st

from inspector import schema as S
from inspector.chip.mapper import GROUP_ORDER
from inspector.ui.export import chart
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import backend_for, cached_backend
from inspector.views.figures import layer_error_figure, saturation_rate_figure
from inspector.views.teaching import (
    NARROWEST,
    SPIKE_BITS_SWEEP,
    STATE_BITS_SWEEP,
    bits_sweep,
    energy_split,
    forget_memory,
    group_split,
    host_share,
    layer_op_counts,
    local_cumulative_sqnr,
    lower_bounds,
    message_counts,
    messaging_totals,
    paper_energy,
    published_mapping,
    saturation_experiment,
    saturation_settings,
    spike_code_figure,
    ternary_counts,
    tour_neuron,
    worked_synapse_example,
)
from inspector.views.teaching_figures import (
    LAYER_NODES,
    PROJECTION_NODES,
    energy_share_figure,
    flow_map_dot,
    kl_legend_figure,
    layer_cores_figure,
    local_cumulative_figure,
    messaging_figure,
    mlgru_figure,
    sweep_figure,
    weight_histogram_figure,
)

# Each step, and the nodes of the data-flow map it is about.
STEPS = {
    "1. Weights": PROJECTION_NODES,
    "2. Spikes": (S.ATTN_NORM, S.MLP_NORM, *PROJECTION_NODES),
    "3. MLGRU": (S.MLGRU, "swish_gate"),
    "4. Messaging": PROJECTION_NODES,
    "5. Saturation": (S.MLGRU, S.RESIDUAL_ATTN, S.RESIDUAL_MLP),
    "6. Drift": (*LAYER_NODES, S.FINAL_NORM, S.LM_HEAD),
    "7. Cores": LAYER_NODES,
    "8. Energy": (*LAYER_NODES, S.FINAL_NORM),
}
NAMES = list(STEPS)
# The map stays at the top of the window while the step scrolls under it.
STICKY_CSS = """<style>
div[data-testid="stLayoutWrapper"]:has(> .st-key-tour_map) {position: sticky; top: 3.75rem; z-index: 100; background: white;
  border-bottom: 1px solid #ddd; padding-bottom: 0.25rem}
</style>"""


@st.cache_data(show_spinner=False, max_entries=16)
def _sweep(run_key: tuple, ids: tuple[int, ...], name: str, values: tuple[int, ...], _backend) -> pl.DataFrame:
    """A width sweep, computed once per model, settings and tokens (run_key), then answered from memory."""
    return bits_sweep(_backend, list(ids), name, values)


@st.cache_data(show_spinner=False, max_entries=8)
def _local(run_key: tuple, ids: tuple[int, ...], _backend) -> pl.DataFrame:
    return local_cumulative_sqnr(_backend, list(ids))


@st.cache_data(show_spinner=False, max_entries=16)
def _messages(run_key: tuple, vth: int, _analysis, _backend) -> pl.DataFrame:
    return message_counts(_analysis, _backend, vth)


def predict(question: str, options: list[str], key: str) -> str | None:
    """A prediction radio with nothing chosen: the step reveals its answer only once one is picked."""
    return st.radio(f"**Predict first:** {question}", options, index=None, key=key)


def verdict(choice: str, truth: str, why: str = "") -> None:
    """Says whether the prediction matched what was measured; `truth` is one of the options."""
    text = f"{truth}{': ' + why if why else ''}."
    if choice == truth:
        st.success(f"Right: {text}")
    else:
        st.info(f"Not quite: {text}")


st.title("Learn")
session, analysis = page_analysis()
backend = backend_for(session)
qc, cfg = session.qc, session.loaded.config
host = host_share(backend)
neuron = tour_neuron(analysis)
last = analysis.window_start + analysis.diff.float_values[S.layer_key(0, S.HIDDEN)].shape[0] - 1
last_text = repr(session.loaded.tokenizer.decode([analysis.run.all_ids[last]]))
groups_per_token = len(backend.core_map.groups)
ids = tuple(analysis.run.all_ids)

st.markdown(STICKY_CSS, unsafe_allow_html=True)
with st.container(key="tour_map"):
    step = st.radio("Step", NAMES, horizontal=True, key="tour_step", label_visibility="collapsed")
    st.graphviz_chart(flow_map_dot(STEPS[step]), width="content")
st.caption(
    f"Map above: the data flow along the arrows (dashed: residual skips). Grey: host; white: chip (RMSNorm to + residual: "
    f"one layer, ×{cfg.num_hidden_layers}); yellow: this step. "
    f"Following token {last} ({last_text}) and neuron {neuron} of layer 0 (output {neuron} of i, f, g; "
    f"state h{neuron})."
)

with st.expander("Words used in this tour", expanded=False):
    st.markdown(
        "- **Neuro-core**: one of the 128 small processors of a Loihi 2 chip. It holds up to a few thousand neurons, "
        "their state, and the synapses (weights) of the connections arriving at them, in its own 192 KB of memory.\n"
        "- **Message** (graded spike): a packet a neuron sends to the cores it connects to, carrying one integer "
        "(here the neuron's quantized output). A neuron whose output is 0 sends nothing.\n"
        "- **Synaptic operation** (synop): what a core does for one message arriving at one stored synapse: multiply the "
        "message's value by the stored weight (here ±1) and add it to the target neuron's input.\n"
        "- **Time step**: one round, synchronized across the chip, in which every core updates each of its neurons "
        "once and delivers their messages. A token crosses the fused neuron groups of the layer stack one after the "
        f"other, one time step per group: {groups_per_token} time steps per token for this model (9 groups per layer "
        "and the final norm). The pages count everything per token.\n"
        "- **Host**: the ordinary CPU next to the chip. The embedding (a table lookup from token id to a vector) "
        "and the LM head (a dense matrix from the last hidden vector to one score per vocabulary word) stay on the "
        "host, in floating point, as in the paper. A lookup is no work for neurons, and the LM head is dense and full "
        f"precision: here {host['lm_head_weights']:,} weights, {host['lm_head_in_layers']:.1f} times the stored ternary "
        "synapses of one layer; on chip each would need 8 or more bits of synapse memory, and the whole vocabulary's "
        "scores must be computed for every token, so nothing is saved by event-driven sparsity. The chip receives "
        "the embedded vector and returns the final normalized hidden vector."
    )

if step == NAMES[0]:
    counts = ternary_counts(backend)
    total = sum(counts.values())
    ops = layer_op_counts(backend)
    matrix = backend.params.layers[0].f_proj.matrix
    st.markdown(
        "Every weight of every projection is **-1, 0 or +1**. BitLinear trains a float *latent* weight w and, at "
        "inference, uses round(w / β) clipped to [-1, 1], times one scale per matrix, **β = mean |w|** (absmean "
        f"quantization; here β = {matrix.beta:.4f} for layer 0's f_proj). A weight becomes 0 when |w| < β/2 and ±1 "
        "otherwise (the dashed lines). The latent weights pile up right at ±β/2: training through the rounding lets a "
        "weight at a threshold flip between two ternary values from one update to the next, and many stay there (a "
        "known effect of quantization-aware training). The first and last bins also hold every weight beyond ±4β."
    )
    chart(
        weight_histogram_figure(matrix.latent_histogram.numpy(), matrix.histogram_edges().numpy(), matrix.beta,
                                "Layer 0 f_proj: latent float weights, coloured by the ternary value they become"),
        "tour_weights",
    )
    st.markdown(
        f"**Additions against multiplies**, layer 0 of this model, per token: up to **{ops['synapse_additions']:,} "
        f"additions** through synapses (one per nonzero weight, when every input is nonzero) against "
        f"**{ops['multiplies']:,} multiplies**, {ops['synapse_additions'] / ops['multiplies']:.0f}x fewer, all per neuron: "
        f"{ops['norm_multiplies']:,} in the {ops['norms']} RMSNorms (attn_norm, mlp_norm, g_norm, and one inside each of "
        "the six BitLinears, which normalize their own input: a square, a multiply by the inverse root and one by the "
        f"gain per element), {ops['requantize_multiplies']:,} requantizations (a multiply and a shift per output), "
        f"{ops['gate_multiplies']:,} in the gates (silu(i)·(1−f), f·h, g_norm·swish(h), silu(gate)·y; from layer 1 on "
        f"also the lower bound's (1−lb)·f) and {ops['residual_multiplies']:,} residual rescales."
    )
    st.markdown(
        "For the *algorithm*, the synapses need no multiplier. **Loihi 2's synapses still multiply**: a core multiplies "
        "each message's payload by the stored weight in hardware built for any weight (the paper stores 8-bit weights), "
        "so ±1 costs the same operation as any other weight. What the chip gains from ternary weights is what they leave "
        f"out: of layer 0's weights {counts['-1']:,} are -1, **{counts['0']:,} are 0 ({counts['0'] / total:.0%})** and "
        f"{counts['+1']:,} are +1; zero weights are not stored and cost no synaptic operation, and all weights are "
        "small enough to stay in the cores' own memory, next to the neurons, instead of being fetched from DRAM for "
        "every token."
    )
    ex = worked_synapse_example(backend, analysis, neuron=neuron)
    st.markdown(
        f"Worked example, neuron {neuron} of layer 0's input projection i_proj at token {last}: of {ex['inputs']} inputs, "
        f"{ex['plus_terms']} nonzero spikes arrive through +1 synapses (sum {ex['sum_plus']}) and {ex['minus_terms']} "
        f"through -1 synapses (sum {ex['sum_minus']}); the accumulator is {ex['sum_plus']} - ({ex['sum_minus']}) = "
        f"**{ex['accumulator']}**, {'exactly' if ex['matches_chip'] else 'NOT'} what the emulated core computed."
    )
elif step == NAMES[1]:
    st.markdown(
        f"Between neurons, activations travel as **graded spikes**: one message carrying a {qc.spike_bits}-bit integer "
        "code. The value is code × scale, the scale fixed per tensor by calibration (the largest value seen on a "
        "calibration text lands on the largest code). A code of 0 is not sent at all: a neuron whose value lies within "
        "half a step of zero is silent."
    )
    chart(spike_code_figure(analysis, token=-1), "tour_spikes")
    choice = predict(
        "with fewer spike bits (8 → 6 → 5 → 4), what happens to the share of nonzero spikes (messages) and to how "
        "often the integer model picks the float model's top-1 token?",
        ["both fall together", "messages fall, agreement stays", "messages stay, agreement falls", "neither moves"],
        "predict_spike_bits",
    )
    if choice is not None:
        with st.spinner("Running the integer model at 8, 6, 5 and 4 spike bits on this run's tokens (once per model)…"):
            sweep = _sweep(session.run_key, ids, "spike_bits", SPIKE_BITS_SWEEP, backend)
        first, final = sweep.row(0, named=True), sweep.row(sweep.height - 1, named=True)
        fell_messages = final["nonzero_spikes"] < first["nonzero_spikes"] - 0.05
        fell_agreement = final["top1_agreement"] < first["top1_agreement"] - 0.05
        outcomes = {(True, True): "both fall together", (True, False): "messages fall, agreement stays",
                    (False, True): "messages stay, agreement falls", (False, False): "neither moves"}
        truth = outcomes[(fell_messages, fell_agreement)]
        verdict(choice, truth)
        chart(sweep_figure(sweep, "spike_bits", {"nonzero_spikes": "nonzero spikes (messages)",
                                                 "top1_agreement": "top-1 agreement with float"},
                           "Fewer spike bits: fewer messages, and less agreement", qc.spike_bits), "tour_spike_sweep")
        st.markdown(
            f"From {first['spike_bits']} to {final['spike_bits']} bits, nonzero spikes go from {first['nonzero_spikes']:.0%} "
            f"to {final['nonzero_spikes']:.0%} and top-1 agreement from {first['top1_agreement']:.0%} to "
            f"{final['top1_agreement']:.0%} (measured now, on this run's {len(ids)} tokens). A coarser step rounds more small "
            "values to 0, which saves messages, and rounds every other value more coarsely too: both cost agreement."
        )
elif step == NAMES[2]:
    layers = cfg.num_hidden_layers
    memory = forget_memory(analysis, qc.gate_frac_bits).with_columns(
        pl.Series("lower_bound_mean", lower_bounds(backend)),
    )
    st.markdown(
        "The MLGRU token mixer is a layer of **stateful neurons**: each keeps a value h in a "
        f"{qc.state_bits}-bit register and updates it once per token, **h ← f·h + (1−f)·silu(i)**. The update is "
        "element-wise: neuron k's new state depends only on its own old state and its own gates. There are **no "
        "recurrent synapses**; the only synapses are the feed-forward projections that compute f, i and g from the "
        "layer's input. The forget gate f = sigmoid(f_proj(x)) (a lookup table on chip) decides how much is kept; from "
        "layer 1 on, a **learned lower bound** lb raises it, f = lb + (1−lb)·sigmoid(·); lb is a cumulative sum over "
        "the layers, so it can only grow with depth. "
        "The state *is* the memory: generation needs no attention cache, and memory does not grow with the text."
    )
    pick = st.radio("Layer", list(range(layers)), horizontal=True, key="tour_mlgru_layer", format_func=lambda k: f"layer {k}")
    key = S.layer_key(pick, S.HIDDEN)
    f_float, h_int = analysis.diff.float_values[key].numpy(), analysis.diff.int_probe.site_values(key).numpy()
    forget = analysis.diff.int_probe.site_codes(S.layer_key(pick, S.FORGET_GATE)).double().numpy() / (1 << qc.gate_frac_bits)
    order = [int(n) for n in (-abs(f_float).mean(axis=0)).argsort()[:3]]
    shown = ([neuron] + [n for n in order if n != neuron])[:3] if pick == 0 else order
    tokens = list(range(analysis.window_start, analysis.window_start + f_float.shape[0]))
    chart(mlgru_figure(tokens, f_float, h_int, forget, shown, pick), "tour_state")
    choice = predict("which layer remembers longest?", [f"layer {k}" for k in range(layers)], "predict_memory")
    if choice is not None:
        top = memory.sort("mean_memory_tokens", descending=True).row(0, named=True)
        verdict(choice, f"layer {top['layer']}", f"mean memory {top['mean_memory_tokens']:.1f} tokens, mean lower bound "
                f"{top['lower_bound_mean']:.2f}")
        st.dataframe(
            memory.select("layer", "lower_bound_mean", "mean_forget_gate", "mean_memory_tokens", "median_memory_tokens"),
            hide_index=True, width="stretch",
            column_config={
                "lower_bound_mean": st.column_config.NumberColumn("mean lower bound lb", format="%.2f"),
                "mean_forget_gate": st.column_config.NumberColumn("mean forget gate f", format="%.2f"),
                "mean_memory_tokens": st.column_config.NumberColumn("memory 1/(1−f), mean (tokens)", format="%.1f"),
                "median_memory_tokens": st.column_config.NumberColumn("memory, median neuron-token", format="%.1f"),
            },
        )
        row0, deepest = memory.row(0, named=True), memory.row(memory.height - 1, named=True)
        st.markdown(
            "A leaky average with factor f spans about 1/(1−f) tokens. Layer 0, with no lower bound: mean f "
            f"{row0['mean_forget_gate']:.2f}, about {row0['mean_memory_tokens']:.1f} tokens; layer {deepest['layer']} (mean "
            f"lower bound {deepest['lower_bound_mean']:.2f}): mean f {deepest['mean_forget_gate']:.2f}, about "
            f"{deepest['mean_memory_tokens']:.1f} tokens. The mean memory is pulled up by a few slow neurons; the median "
            "neuron and token forgets sooner. All from the integer model's forget-gate codes on this run."
        )
elif step == NAMES[3]:
    split = energy_split(analysis, backend)
    st.markdown(
        "Loihi 2 is **event-driven**: a neuron that has nothing to send sends no message, and a message costs one "
        "synaptic operation per stored synapse it reaches. That is not *all* the cost: every neuron is updated every "
        "time step whatever the traffic, and the chip draws static power all the time; in the app's estimate "
        f"static power is {split['static_share']:.0%} of the energy per token on this model (step 8). How many messages "
        "are sent depends on how neurons encode their output:"
    )
    vth = st.select_slider(
        "Sigma-delta threshold vth (codes)", [2, 4, 8, 16], value=2, key="tour_threshold",
        help="As Lava's Delta neuron: a change is sent once it reaches vth codes; smaller changes wait in the residue.",
    )
    totals = messaging_totals(_messages(session.run_key, vth, analysis, backend))
    chart(messaging_figure(totals), "tour_messaging")
    rows = {r["encoding"]: r for r in totals.iter_rows(named=True)}
    every, nonzero = rows["every neuron"], rows["graded spikes (nonzero)"]
    changes, thresholded = rows["sigma-delta (changes)"], rows[f"sigma-delta, vth {vth}"]
    st.markdown(
        f"- **Every neuron, every token** (a clocked design): {every['messages_per_token']:,.0f} messages, "
        f"{every['synops_per_token']:,.0f} synaptic ops per token.\n"
        f"- **Graded spikes** (the integer model's `dense` messaging: only nonzero codes are sent): "
        f"{nonzero['share_of_every_neuron']:.0%} of those synaptic ops. With {qc.spike_bits}-bit codes a code is 0 only "
        f"within half a step of zero: {nonzero['messages_per_token'] / every['messages_per_token']:.0%} of the neurons "
        "send a message at a token.\n"
        f"- **Sigma-delta** (`delta` at vth 0, as Lava's `lava.proc.sdn` Delta neuron: send only the change since the "
        f"last message; the receiver's Sigma adds it up and holds the exact code): {changes['share_of_every_neuron']:.0%}, "
        + ("more than graded spikes: fine codes change at almost every token, and a change to 0 must be sent too.\n"
           if changes["synops_per_token"] >= nonzero["synops_per_token"] else "less than graded spikes.\n")
        + f"- **Sigma-delta with vth {vth}** (send a change only once it reaches {vth} codes; the rest waits in the "
        f"sender's residue, so the receiver's copy lags by less than {vth} codes and the model's output changes): "
        f"{thresholded['share_of_every_neuron']:.0%}."
    )
    choice = predict(
        "with vth = 16 codes, will sigma-delta send fewer than half of the graded spikes' synaptic ops?",
        ["yes", "no"], "predict_sigma_delta",
    )
    if choice is not None:
        sixteen = messaging_totals(_messages(session.run_key, 16, analysis, backend))
        sent = sixteen.filter(pl.col("encoding") == "sigma-delta, vth 16")["synops_per_token"][0]
        ratio = sent / nonzero["synops_per_token"]
        verdict(choice, "yes" if ratio < 0.5 else "no", f"at vth 16 it sends {ratio:.0%} of the graded spikes' ops")
    st.caption(
        "Counted from this run's spike codes (the inputs of every ternary projection, the tokens kept for detail) with the "
        "integer model's own messaging code (`inspector.quant.messaging`). This count does not weigh accuracy: set a "
        "group to delta with a vth in the sidebar (QuantConfig overrides) and the whole run, its outputs and the Spike "
        "activity page's counts follow; the Sensitivity page's sweep finds the vth each group tolerates."
    )
elif step == NAMES[4]:
    saturation = analysis.tables["saturation"]
    clipped, underflow = int(saturation["clipped"].sum()), int(saturation["underflow"].sum())
    states = saturation.filter(saturation["kind"] == "state")
    st.markdown(
        "A fixed-point register holds a limited range and loses values at **both ends**. At the top, this app's integer "
        "model **saturates**: a value beyond the range is clipped to the largest code, and counted. That is a design "
        "choice, not what registers do by themselves: plain two's-complement arithmetic wraps around (a large positive "
        "value becomes a large negative one), and Lava's own LIF neuron models wrap. At the bottom, a value smaller than "
        "half a step rounds to code 0: it **underflows**. The two errors differ in size: underflow loses at most half a "
        "step, clipping loses everything beyond the range, without bound. "
        f"This run clipped {clipped:,} values and {underflow:,} underflowed (nonzero in the float model, 0 in the integer "
        f"one); {int(states['zero'].sum()) / max(int(states['values'].sum()), 1):.1%} of MLGRU state codes were 0. "
        "Calibration sets each scale from the largest value seen on a calibration text, so clipping is rare by "
        "construction; too few bits show up as underflow instead."
    )
    chart(saturation_rate_figure(saturation), "tour_saturation")
    choice = predict(
        f"the MLGRU state has {qc.state_bits} bits. Cut it to 12, 10, then 8 bits: what happens?",
        ["underflow rises, agreement barely moves", "underflow rises and agreement collapses", "states start to clip",
         "nothing changes"],
        "predict_state_bits",
    )
    if choice is not None:
        with st.spinner("Running the integer model at 24, 12, 10 and 8 state bits on this run's tokens (once per model)…"):
            sweep = _sweep(session.run_key, ids, "state_bits", STATE_BITS_SWEEP, backend)
        first, final = sweep.row(0, named=True), sweep.row(sweep.height - 1, named=True)
        if final["states_clipped"] > 0.001:
            truth = "states start to clip"
        elif final["states_underflowed"] <= first["states_underflowed"] + 0.001:
            truth = "nothing changes"
        elif first["top1_agreement"] - final["top1_agreement"] > 0.3:
            truth = "underflow rises and agreement collapses"
        else:
            truth = "underflow rises, agreement barely moves"
        verdict(choice, truth)
        chart(sweep_figure(sweep, "state_bits", {"states_underflowed": "MLGRU states underflowed",
                                                 "top1_agreement": "top-1 agreement with float"},
                           "Fewer state bits: more underflow, agreement holds longer", qc.state_bits), "tour_state_sweep")
        holds = [r["state_bits"] for r in sweep.iter_rows(named=True) if first["top1_agreement"] - r["top1_agreement"] <= 0.05]
        st.markdown(
            f"At {final['state_bits']} bits, {final['states_underflowed']:.1%} of state values underflow and top-1 agreement "
            f"is {final['top1_agreement']:.0%} (at {first['state_bits']} bits: {first['top1_agreement']:.0%}). Agreement stays "
            f"within 5 points of the {first['state_bits']}-bit model down to {min(holds)} bits here: the register only has "
            "to hold what the model can use."
        )
    st.markdown(
        "**Experiment.** The same tokens through the integer model under three settings: yours; a state range four "
        "times too small (state headroom 0.25: the calibrated maximum lies beyond the register, so states clip); and "
        "every bit width at its minimum (states round to zero: underflow)."
    )
    experiments = st.session_state.setdefault("saturation_experiments", {})
    key = (session.run_key, "saturation_experiment")
    if st.button("Run the experiment", key="sat_experiment_button") and key not in experiments:
        with st.spinner("Calibrating and running two more integer models on the same tokens…"):
            experiments.clear()  # one at a time: each holds only a small table
            experiments[key] = saturation_experiment(
                analysis.run.all_ids, saturation_settings(qc),
                lambda q: cached_backend(str(session.loaded.directory), session.fingerprint, q, "emulator"),
            )
    if key in experiments:
        table = experiments[key]
        labels = ["yours", "state headroom 0.25", "every width at its minimum"]
        shown = table.with_columns(pl.Series("setting", labels)).select(
            "setting", "states_clipped", "states_underflowed", "top1_agreement", "perplexity_int",
        )
        st.dataframe(shown, hide_index=True, width="stretch", column_config={
            "states_clipped": st.column_config.NumberColumn("states clipped", format="percent"),
            "states_underflowed": st.column_config.NumberColumn("states underflowed", format="percent"),
            "top1_agreement": st.column_config.NumberColumn("top-1 agreement", format="percent"),
            "perplexity_int": st.column_config.NumberColumn("integer perplexity", format="%.1f"),
        })
        squeezed, narrow = table.row(1, named=True), table.row(2, named=True)
        st.markdown(
            f"With the squeezed state range, {squeezed['states_clipped']:.1%} of state values clipped and the integer model "
            f"agreed with the float model's top-1 token {squeezed['top1_agreement']:.0%} of the time. With every width at "
            f"its minimum (the narrowest the sidebar offers: {', '.join(f'{k} {v}' for k, v in NARROWEST.items())}), "
            f"{narrow['states_underflowed']:.0%} of state values underflowed"
            + (", while no value clipped" if narrow["values_clipped"] == 0 else f", {narrow['values_clipped']:,} values clipped")
            + (", and the model is destroyed" if narrow["top1_agreement"] < 0.05 else "")
            + f": top-1 agreement {narrow['top1_agreement']:.0%}, perplexity {narrow['perplexity_int']:,.0f} against a "
            f"vocabulary of {cfg.vocab_size:,} words (a model that guesses uniformly scores {cfg.vocab_size:,})."
        )
elif step == NAMES[5]:
    d = analysis.diff
    t = d.tokens
    st.markdown(
        "Every rounding is a small error; errors pass through the layers and the recurrent state carries them across "
        "tokens. Two measures, both on the **same tokens** (the integer model's text, read by both models):\n"
        f"- **top-1 agreement**: how often both models pick the same next token: **{float(t['agree'].mean()):.0%}** here;\n"
        "- **KL divergence** (in nats) between the two next-token distributions: mean "
        f"**{float(t['kl'].mean()):.4f}**.\n\n"
        "Perplexity on a model's own sampled text is no judge of drift: a short sample rewards whichever model was more "
        "confident in what it drew (a coarser integer model can even score lower than the float one)."
    )
    chart(kl_legend_figure(t, analysis.prompt_tokens), "tour_kl")
    st.markdown(
        "The **SQNR** (signal-to-quantization-noise ratio) measures how much signal survives each stage: 10·log10 of "
        "the float values' power over the power of the float-integer difference, in decibels (20 dB: the error is a "
        "tenth of the signal's amplitude). One rounding to a step Δ adds noise of power Δ²/12, so each extra bit (half "
        "the step) gains about 6 dB **for a site's own rounding** (its *local* error). What the chart shows is the "
        "*cumulative* error: each site also carries every earlier site's error, passed through the layers and the "
        "state, so it sits lower and gains less per bit than its own rounding."
    )
    chart(layer_error_figure(d.tensors, sites=[S.ATTN_NORM, S.HIDDEN, S.RESIDUAL_ATTN, S.RESIDUAL_MLP]), "tour_depth")
    choice = predict(
        "compare a residual output's SQNR from its own rounding alone (local) with the SQNR it actually has "
        "(cumulative). Which is higher?", ["local", "about the same", "cumulative"], "predict_local",
    )
    if choice is not None:
        with st.spinner("Running the integer model fed with the float model's values, site by site (once per model)…"):
            table = _local(session.run_key, ids, backend)
        gap = float((table["local_sqnr_db"] - table["cumulative_sqnr_db"]).mean())
        verdict(choice, "local" if gap > 3 else "cumulative" if gap < -3 else "about the same",
                f"{gap:.1f} dB apart on average over the layers")
        chart(local_cumulative_figure(table, S.RESIDUAL_MLP, qc.residual_bits), "tour_local")
        worst = table.row(table.height - 1, named=True)
        # one more bit quarters this site's own noise; if the errors add independently, the cumulative noise loses 3/4 of it
        after = worst["cumulative_nsr"] - 0.75 * worst["local_nsr"]
        gain = 10 * math.log10(worst["cumulative_nsr"] / after) if after > 0 else float("inf")
        st.markdown(
            f"Layer {worst['layer']}'s residual output: **{worst['local_sqnr_db']:.1f} dB** from its own {qc.residual_bits}-bit "
            f"rounding, **{worst['cumulative_sqnr_db']:.1f} dB** with everything upstream (computed now on this run's tokens, "
            "`inspector.compare.local_error`). One more bit at this site would quarter its own noise, +6 dB locally; "
            f"if the errors add independently, the cumulative figure would gain only about {gain:.1f} dB, since most of its "
            "noise comes from the sites before it."
        )
elif step == NAMES[6]:
    core_map, hw = backend.core_map, backend.core_map.hardware
    split = group_split(core_map)
    layer_cores = int(split["cores"].sum())
    big = published_mapping("MMfreeLM-370M", hw)
    home = core_map.table.filter((pl.col("layer") == 0) & (pl.col("start") <= neuron) & (pl.col("end") > neuron))
    home_text = ", ".join(f"{g} on core {c}" for g, c in zip(home["group"].to_list(), home["core"].to_list(), strict=True)
                          if g in (S.NORM_ATTN, S.MLGRU, S.RESIDUAL))
    st.markdown(
        f"The mapper places each layer as {len(GROUP_ORDER)} **fused neuron groups** in data-flow order, one neuron "
        "program per group; each group gets its own neuro-cores. A group is split across cores when one core cannot "
        f"hold it; per core the limits are {hw.max_neurons_per_core:,} neurons (assumed), "
        f"{hw.synapse_memory_bytes // 1024} KiB of synapse memory (assumed, of the published 192 KB SRAM) at "
        f"{hw.bits_per_synapse} bits per stored synapse, and the SRAM. Layer 0 of this model takes **{layer_cores} cores**; "
        "the limit that splits its projections is **synapse memory**. Neuron "
        f"{neuron} lives on {home_text}."
    )
    st.dataframe(split.select("group", "neurons", "synapses", "cores", "deciding_limit", "synapse_memory_use"),
                 hide_index=True, width="stretch", column_config={
                     "synapse_memory_use": st.column_config.NumberColumn("synapses / one core's synapse memory",
                                                                         format="%.2f"),
                     "deciding_limit": st.column_config.TextColumn("what splits it"),
                 })
    chart(layer_cores_figure(core_map.table, hw.synapse_memory_bytes, hw.core_sram_bytes, 0), "tour_cores")
    choice = predict(
        f"MMfreeLM-370M (hidden {big['hidden_size']:,}, {big['layers']} layers) ran on 24 Loihi 2 chips in the paper. "
        "How many chips does our mapper need for its layers?",
        ["fewer than 24", "about 24", "more than 24"], "predict_chips",
    )
    if choice is not None:
        verdict(choice, "fewer than 24" if big["chips"] < 20 else "about 24" if big["chips"] <= 28 else "more than 24",
                f"{big['chips']} chips")
        st.markdown(
            f"This model: **{core_map.cores} cores on {core_map.chips} chip(s)** (128 cores per chip, published). "
            f"MMfreeLM-370M, mapped from its shapes alone (no weights; {big['density']:.0%} of weights nonzero assumed): "
            f"**{big['cores_per_layer']} cores per layer, {big['cores']:,} cores, {big['chips']} chips**. The paper ran it on "
            "24 chips, one block per chip, with embedding and LM head on the host (as reported): a layer fills "
            f"{big['cores_per_layer']} of a chip's 128 cores in our mapping, so one block per chip is a layout choice, not "
            "a capacity need. The LM head on chip would take about 7 more chips (as reported)."
        )
else:
    split, paper = energy_split(analysis, backend), paper_energy()
    st.markdown(
        f"**This model** (the app's estimate with the preset *{split['preset']}*, Hardware page; per-operation costs "
        f"and static power per chip there, each with its source): **{split['total_mj']:.3g} mJ per generated token** "
        f"on {split['chips']} chip(s), of which "
        f"{split['static_mj']:.3g} mJ static (idle power × the {split['ms_per_token']:.2f} ms the token occupies the chip) "
        f"and {split['dynamic_mj']:.3g} mJ dynamic ({split['synops_mj']:.3g} synaptic ops, {split['neuron_mj']:.2g} neuron "
        f"updates, {split['message_mj']:.2g} messages): **static {split['static_share']:.0%}**."
    )
    choice = predict("in the paper's 24-chip measurement, what share of the energy per generated token is dynamic "
                     "(the work itself)?", ["most of it", "about half", "under 1%"], "predict_energy")
    if choice is not None:
        share = paper["dynamic_mj_per_token"] / paper["generation_mj_per_token"]
        truth = "under 1%" if share < 0.01 else "about half" if share < 0.75 else "most of it"
        verdict(choice, truth, f"{share:.1%}, arithmetic from the reported figures below")
    paper_static = paper["generation_mj_per_token"] - paper["dynamic_mj_per_token"]
    chart(energy_share_figure([
        {"system": f"this model, {split['chips']} chip (estimate)", "static_mj": split["static_mj"],
         "dynamic_mj": split["dynamic_mj"]},
        {"system": "paper, 370M on 24 chips (arithmetic)", "static_mj": paper_static,
         "dynamic_mj": paper["dynamic_mj_per_token"]},
    ]), "tour_energy")
    st.markdown(
        f"**The paper** (MMfreeLM-370M, 24 chips, batch 1; as reported): {paper['generation_mj_per_token']:.0f} mJ per "
        "generated token at 41.5 tokens/s, 3.7 mJ per token in prefill at 6,632 tokens/s. Arithmetic from these "
        f"figures (not reported as such): the system draws {paper['generation_w']:.1f} W in generation and "
        f"{paper['prefill_w']:.1f} W in prefill; the extra {paper['prefill_w'] - paper['generation_w']:.1f} W of prefill "
        f"over 6,632 tokens/s is about **{paper['dynamic_mj_per_token']:.1f} mJ of dynamic energy per token**, so about "
        f"{paper['static_share_generation']:.1%} of a generated token's energy is static. At batch 1 in generation a token "
        "passes the 24 blocks one after the other, one block per chip: at any moment one chip works while **23 of 24 "
        "idle**, drawing static power (as reported). Prefill keeps all chips busy with a pipeline of tokens, which is why "
        f"it costs {paper['generation_mj_per_token'] / paper['prefill_mj_per_token']:.0f} times less per token. "
        "Event-driven sparsity trims the dynamic part; the static part shrinks only with "
        "fewer chips or more tokens in flight (batching, pipelining)."
    )
