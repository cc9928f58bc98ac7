"""Generation: the float and the integer model continue the same prompt, token by token."""

from __future__ import annotations

import html

import streamlit as st

from inspector.lm.generate import eos_note
from inspector.schema import DEPTH_SITES
from inspector.ui.export import chart, column_help, table_downloads
from inspector.ui.runs import page_analysis
from inspector.ui.text import plain
from inspector.views.exports import generation_table
from inspector.views.figures import colored_tokens_html, distribution_figure, layer_error_figure

st.title("Generation")
session, analysis = page_analysis()
diff, tokenizer = analysis.diff, session.loaded.tokenizer
n_prompt = analysis.prompt_tokens
table = generation_table(analysis, tokenizer)  # one row per generated token, keyed by `token`
ppl = analysis.perplexities

st.caption(
    "Both models continue the prompt with the same sampling settings and seed. The integer model runs on "
    f"the {session.backend.label} backend ({session.backend.reason}); each of its tokens is colored by how close the two models' "
    "next-token distributions were at that step (green: same top-1 and KL < 0.01 nats; yellow/orange: "
    f"same top-1, larger KL; red: the top-1 tokens differ). Tokens are numbered from the start of the prompt: "
    f"the prompt is tokens 0-{n_prompt - 1}, the first generated token is token {n_prompt}."
)
agree, kl = table["same_top1"].to_list(), table["kl_nats"].to_list()
top1_share, mean_kl = analysis.generation_agreement()
c1, c2, c3, c4 = st.columns(4)
c1.metric(
    "Top-1 agreement", f"{top1_share:.0%}",
    help="Share of generated tokens at which both models ranked the same next token first.",
)
c2.metric("Mean KL (nats)", f"{mean_kl:.4f}")
c3.metric(
    "Perplexity, float (own text)", f"{ppl.float_own:.2f}",
    help="The float model on the tokens it generated itself (the left text).",
)
c4.metric(
    "Perplexity, integer (own text)", f"{ppl.int_own:.2f}",
    help="The integer model on the tokens it generated itself (the right text).",
)
_, _, c3, c4 = st.columns(4)
c3.metric(
    "Perplexity, float (integer's text)", f"{ppl.float_on_int_text:.2f}",
    help="The float model teacher-forced on the integer model's continuation.",
)
c4.metric(
    "Perplexity, integer (integer's text)", f"{ppl.int_on_int_text:.2f}",
    help="The integer model on its own continuation, computed in the lockstep comparison.",
)
st.caption(
    f"Perplexity, first row: each model on its own continuation ({ppl.float_tokens} and {ppl.int_tokens} generated tokens): two "
    "different texts. "
    "Second row: both models on the same text, the integer model's continuation: the fair comparison. Perplexity uses the "
    "untempered distribution, so sampling at a temperature can pick tokens the model finds unlikely."
)

left, right = st.columns(2)
with left:
    st.subheader("Float model")
    st.code(analysis.prompt + analysis.float_text, language=None, wrap_lines=True)
    if note := eos_note(tokenizer, analysis.float_tokens, analysis.sampling.max_new_tokens):
        st.caption(f"The float model's {note} (the sidebar's 'Continue past end-of-sequence' goes on).")

tokens = table["token"].to_list()
labels = {t: f"{t} · {text!r}"[:28] for t, text in zip(tokens, table["text"].to_list(), strict=True)}
with right:
    st.subheader(f"Integer model · {session.backend.label}")
    text_slot = st.empty()
    if note := eos_note(tokenizer, analysis.run.tokens, analysis.sampling.max_new_tokens):
        st.caption(f"The integer model's {note} (the sidebar's 'Continue past end-of-sequence' goes on).")

st.subheader("Inspect a token")
if len(tokens) > 1:
    by_label = {label: t for t, label in labels.items()}
    picked = by_label[st.select_slider(
        "Generated token (numbered from the start of the prompt)", list(by_label), value=labels[tokens[0]], key="token_pick"
    )]
else:
    picked = tokens[0]
    st.caption(f"The only generated token: {plain(labels[picked])}")
# st.html, not st.markdown: the prompt and the generated text are escaped HTML and never parsed as Markdown.
text_slot.html(
    f'<div style="font-family:monospace;white-space:pre-wrap;color:#555">{html.escape(analysis.prompt)}</div>'
    + colored_tokens_html(table["text"].to_list(), agree, kl, picked, first_token=n_prompt),
)
step = analysis.producing_position(picked)
a, b = st.columns(2)
with a:
    if diff.in_window(step):
        chart(
            distribution_figure(
                *diff.logits_at(step), tokenizer,
                title=f"Next-token distributions after token {step}: they produced token {picked}",
            ),
            "distribution",
        )
    else:
        st.info(
            f"Next-token distributions are kept for tokens {diff.window_start} on (the sidebar's 'Per-neuron detail'); "
            "choose a later token or a wider window."
        )
with b:
    chart(
        layer_error_figure(
            diff.tensors, token=step, sites=list(DEPTH_SITES),
            where=f" at token {step} (it produced token {picked})",
        ),
        "layer_error_at_token",
    )
st.caption(
    "SQNR (signal-to-quantization-noise ratio) = 10·log10 of the float values' power over the power of their "
    "difference from the integer model's dequantized values, in dB: higher is better, about 6 dB per bit."
)
st.subheader("Token by token (integer model)")
st.caption(
    "`piece` is the tokenizer's raw vocabulary entry (byte-level BPE: Ġ is a space, Ċ a newline; SentencePiece: ▁ is a space), "
    "`text` the decoded "
    "characters. `kl_nats` and `same_top1` compare the distributions the token was drawn from."
)
st.dataframe(table, hide_index=True, width="stretch", column_config=column_help(table))
table_downloads(table, "generation")
