"""Learn: a guided tour of how a MatMul-free LM computes on Loihi 2, step by step on the live model."""

from __future__ import annotations

import streamlit as st

from inspector.figures import kl_agreement_figure, layer_error_figure, saturation_rate_figure
from inspector.teaching import (
    host_share,
    layer_op_counts,
    saturation_experiment,
    saturation_settings,
    sparsity_summary,
    spike_code_figure,
    spike_nonzero_table,
    spike_sparsity_figure,
    state_traces_figure,
    ternary_counts,
    weight_histogram,
    worked_synapse_example,
)
from inspector.ui.export import chart
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import backend_for, cached_backend

STEPS = [
    "1. Ternary weights",
    "2. Graded spikes",
    "3. The MLGRU neuron",
    "4. Event-driven sparsity",
    "5. Saturation",
    "6. Drift between float and integer",
]

st.title("Learn")
session, analysis = page_analysis()
emulator = backend_for(session)
host = host_share(emulator)
with st.expander("Words used in this tour", expanded=False):
    st.markdown(
        "- **Neuro-core**: one of the 128 small processors of a Loihi 2 chip. It holds up to a few thousand neurons, "
        "their state, and the synapses (weights) of the connections arriving at them, in its own 192 KB of memory.\n"
        "- **Message** (graded spike): a packet a neuron sends to the cores it connects to, carrying one integer "
        "(here the neuron's quantized output). A neuron whose output is 0 sends nothing.\n"
        "- **Synaptic operation** (synop): what a core does for one message arriving at one stored synapse: add the "
        "message's value times the weight (here ±1, so add or subtract) to the target neuron's input.\n"
        "- **Time step**: one round, synchronized across the chip, in which every core updates each of its neurons "
        "once and delivers their messages. A token passes the neuron groups of the layer stack one after the other, "
        "a time step each; the pages count everything per token.\n"
        "- **Host**: the ordinary CPU next to the chip. The embedding (a table lookup from token id to a vector) "
        "and the LM head (a dense matrix from the last hidden vector to one score per vocabulary word) stay on the "
        "host, in floating point, as in the paper. A lookup is no work for neurons, and the LM head is dense and full "
        f"precision: here {host['lm_head_weights']:,} weights, {host['lm_head_in_layers']:.1f} times the stored ternary "
        "synapses of one layer; on chip each would need 8 or more bits of synapse memory, and the whole vocabulary's "
        "scores must be computed for every token, so nothing is saved by event-driven sparsity. The chip receives "
        "the embedded vector and returns the final normalized hidden vector."
    )
step = st.radio("Step", STEPS, horizontal=True, key="tour_step")

if step == STEPS[0]:
    counts = ternary_counts(emulator)
    total = sum(counts.values())
    ops = layer_op_counts(emulator)
    remaining = ops["requantize_multiplies"] + ops["norm_multiplies"] + ops["state_multiplies"]
    st.markdown(
        "Every weight of every projection is **-1, 0 or +1** (BitLinear's absmean quantization). "
        "Multiplying by ±1 is adding or subtracting, and 0 is skipping: the **synapses need no multiplier**. "
        "Multiplies do remain, but per neuron rather than per synapse: each projection's sum is requantized "
        "(an integer multiply and a shift), each RMSNorm squares its inputs and applies its gain, and the MLGRU "
        f"computes f·h. In layer 0 of this model, per token: up to {ops['synapse_additions']:,} additions through "
        f"synapses against about {remaining:,} multiplies ({ops['requantize_multiplies']:,} requantizations, "
        f"{ops['norm_multiplies']:,} in the norms, {ops['state_multiplies']:,} for f·h). "
        f"Of its weights, {counts['-1']:,} are -1, {counts['0']:,} are 0 "
        f"({counts['0'] / total:.0%}: synapses that need not even be stored) and {counts['+1']:,} are +1."
    )
    chart(weight_histogram(emulator), "tour_weights")
    ex = worked_synapse_example(emulator, analysis)
    st.markdown(
        f"Worked example, neuron 0 of layer 0's input projection at the last token: of {ex['inputs']} inputs, "
        f"{ex['plus_terms']} arrive through +1 synapses (sum {ex['sum_plus']}) and {ex['minus_terms']} through "
        f"-1 synapses (sum {ex['sum_minus']}); the accumulator is {ex['sum_plus']} - ({ex['sum_minus']}) = "
        f"**{ex['accumulator']}**, {'exactly' if ex['matches_chip'] else 'NOT'} what the emulated core computed."
    )
elif step == STEPS[1]:
    st.markdown(
        f"Between neurons, activations travel as **graded spikes**: one message carrying a {session.qc.spike_bits}-bit "
        "integer. The float value is recovered as code × scale, where the scale is fixed per tensor by calibration. "
        "A code of 0 is not sent at all."
    )
    chart(spike_code_figure(analysis), "tour_spikes")
elif step == STEPS[2]:
    st.markdown(
        "The MLGRU token mixer is a layer of **stateful neurons**: each keeps a value h in a "
        f"{session.qc.state_bits}-bit register and updates it once per token, h ← f·h + (1-f)·silu(i). "
        "The forget gate f (a sigmoid from a lookup table) decides how much the neuron remembers. "
        "This is why generation needs no attention cache: the state *is* the memory. Lines: float model; dots: the "
        "integer register, dequantized."
    )
    chart(state_traces_figure(analysis), "tour_state")
elif step == STEPS[3]:
    s = sparsity_summary(analysis)
    nonzero, dense_share = s["spike_nonzero_share"], s["synops_per_token"] / max(s["dense_synops_per_token"], 1)
    how_often = "rarely" if nonzero > 0.75 else "often" if nonzero < 0.5 else "only sometimes"
    st.markdown(
        f"Loihi 2 is **event-driven**: only nonzero values cost anything. But {session.qc.spike_bits}-bit graded spikes "
        f"are **{how_often} zero**: in this run {nonzero:.0%} of the spikes into the ternary synapses were nonzero, so "
        f"the chip performed {s['synops_per_token']:,.0f} synaptic operations per token, **{dense_share:.0%} of the "
        f"{s['dense_synops_per_token']:,.0f}** a dense evaluation of every stored synapse would need. A spike code is 0 "
        "only when the value lies within half a quantization step of zero, and with many bits that step is small. "
        f"Over all neurons (norms, MLGRU, GLU included), {s['silent_share']:.0%} of outputs were zero per token."
    )
    chart(spike_sparsity_figure(spike_nonzero_table(analysis)), "tour_sparsity")
    st.markdown(
        "**What would make them sparser**: fewer spike bits (lower *BitLinear input bits* in the sidebar: a coarser "
        "step rounds more small values to 0, at a cost in accuracy), a threshold that drops small values before they "
        "are sent (a dead zone), or a model trained for sparse activations (a ReLU-like activation or a sparsity "
        "penalty), as spiking-network training usually does. The Spike activity page shows where messages come from."
    )
elif step == STEPS[4]:
    saturation = analysis.tables["saturation"]
    clipped = int(saturation["clipped"].sum())
    underflow = int(saturation["underflow"].sum())
    states = saturation.filter(saturation["kind"] == "state")
    st.markdown(
        "A fixed-point register holds a limited range, and loses values at **both ends**. A value beyond the range is "
        "**saturated** (clipped to the largest representable value) rather than wrapped around. A value smaller than "
        "half a step of the register rounds to code 0: it **underflows**, and the information is gone just the same. "
        f"This run clipped {clipped:,} values and {underflow:,} values underflowed (nonzero in the float model, 0 in "
        f"the integer one); {int(states['zero'].sum()) / max(int(states['values'].sum()), 1):.1%} of MLGRU state codes were 0. "
        "Calibration sets each scale from the largest value seen on a calibration text, so clipping is rare by "
        "construction; too few bits show up as underflow instead."
    )
    chart(saturation_rate_figure(saturation), "tour_saturation")
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
                analysis.run.all_ids, saturation_settings(session.qc),
                lambda qc: cached_backend(str(session.loaded.directory), session.fingerprint, qc, "emulator"),
            )
    if key in experiments:
        table = experiments[key]
        st.dataframe(table, hide_index=True, width="stretch", column_config={
            name: st.column_config.NumberColumn(format="percent") for name in (
                "states_clipped", "states_underflowed", "states_at_zero", "top1_agreement",
            )
        })
        squeezed, narrow = table.row(1, named=True), table.row(2, named=True)
        st.markdown(
            f"With the squeezed state range, {squeezed['states_clipped']:.1%} of state values clipped and the integer model "
            f"agreed with the float model's top-1 token {squeezed['top1_agreement']:.0%} of the time. With every width at "
            f"its minimum, {narrow['states_underflowed']:.0%} of state values underflowed"
            + (", while no value clipped: the damage is done at the bottom of the range." if narrow["values_clipped"] == 0
               else f", and {narrow['values_clipped']:,} values clipped.")
        )
else:
    d, ppl = analysis.diff, analysis.perplexities
    st.markdown(
        "Every rounding is a small error; errors pass through the layers and the recurrent state carries them "
        "across tokens. The **SQNR** (signal-to-quantization-noise ratio) measures how much signal survives each "
        "stage: 10·log10 of the float values' power over the power of the difference between float and integer "
        "values, in decibels; higher is better, and each extra bit adds about 6 dB (20 dB: the error is a tenth of "
        "the signal's amplitude). The **KL divergence** (in nats) shows how far the next-token distributions drift. "
        f"On the same text, the integer model's {ppl.int_tokens} generated tokens: perplexity "
        f"{ppl.float_on_int_text:.2f} (float) vs {ppl.int_on_int_text:.2f} (integer)."
    )
    chart(layer_error_figure(d.tensors, sites=["attn_norm", "hidden", "residual_attn", "residual_mlp"]), "tour_depth")
    chart(kl_agreement_figure(d.tokens, analysis.prompt_tokens), "tour_kl")
