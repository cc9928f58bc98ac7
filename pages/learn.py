"""Learn: a guided tour of how a MatMul-free LM computes on Loihi 2, step by step on the live model."""

from __future__ import annotations

import streamlit as st

from inspector.figures import kl_agreement_figure, layer_error_figure, saturation_rate_figure
from inspector.teaching import (
    spike_code_figure,
    sparsity_summary,
    state_traces_figure,
    ternary_counts,
    weight_histogram,
    worked_synapse_example,
)
from inspector.ui.export import chart
from inspector.ui.runs import page_analysis
from inspector.ui.sidebar import emulator_for

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
emulator = emulator_for(session)
step = st.radio("Step", STEPS, horizontal=True, key="tour_step")

if step == STEPS[0]:
    counts = ternary_counts(emulator)
    total = sum(counts.values())
    st.markdown(
        "Every weight of every projection is **-1, 0 or +1** (BitLinear's absmean quantization). "
        "Multiplying by ±1 is adding or subtracting, and 0 is skipping: a layer needs **no multiplier**. "
        f"In layer 0 of this model: {counts['-1']:,} weights are -1, {counts['0']:,} are 0 "
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
    st.markdown(
        f"Loihi 2 is **event-driven**: only nonzero values cost anything. In this run {s['silent_share']:.0%} of "
        f"neuron outputs were zero per token, and the chip performed {s['synops_per_token']:,.0f} synaptic operations "
        f"per token instead of the {s['dense_synops_per_token']:,.0f} a dense evaluation of every stored synapse "
        f"would need ({s['synops_per_token'] / max(s['dense_synops_per_token'], 1):.0%}). The Spike activity page shows where."
    )
elif step == STEPS[4]:
    clipped = int(analysis.tables["saturation"]["clipped"].sum())
    st.markdown(
        "A fixed-point register holds a limited range. A value beyond it is **saturated** (clipped to the largest "
        f"representable value) rather than wrapped around. This run clipped {clipped:,} values. Lower the state bits "
        "or the state headroom in the sidebar's QuantConfig overrides and watch this chart and the State saturation page."
    )
    chart(saturation_rate_figure(analysis.tables["saturation"]), "tour_saturation")
else:
    d = analysis.diff
    st.markdown(
        "Every rounding is a small error; errors pass through the layers and the recurrent state carries them "
        "across tokens. The SQNR along depth shows how much signal survives each stage; the KL divergence shows "
        f"how far the next-token distributions drift. Here: perplexity {d.perplexity_float:.2f} (float) vs "
        f"{d.perplexity_int:.2f} (integer) on the same tokens."
    )
    chart(layer_error_figure(d.tensors, sites=["attn_norm", "hidden", "residual_attn", "residual_mlp"]), "tour_depth")
    chart(kl_agreement_figure(d.tokens, analysis.prompt_tokens), "tour_kl")
