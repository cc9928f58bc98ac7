"""Generation: the float and the integer model continue the same prompt, token by token."""

from __future__ import annotations

import html

import polars as pl
import streamlit as st

from inspector.figures import colored_tokens_html, distribution_figure, layer_error_figure
from inspector.generate import token_table
from inspector.ui.export import chart, table_downloads
from inspector.ui.runs import page_analysis

st.title("Generation")
session, analysis = page_analysis()
diff, tokenizer = analysis.diff, session.loaded.tokenizer
n_prompt = analysis.prompt_tokens
generated = diff.tokens.slice(n_prompt - 1, len(analysis.run.tokens))  # the distributions that produced each token

st.caption(
    "Both models continue the prompt with the same sampling settings and seed. The integer model runs on "
    f"the {session.backend.label} backend ({session.backend.reason}); each of its tokens is colored by how close the two models' "
    "next-token distributions were at that step (green: same top-1 and KL < 0.01 nats; yellow/orange: "
    "same top-1, larger KL; red: the top-1 tokens differ)."
)
agree = generated["agree"].to_list()
kl = generated["kl"].to_list()
c1, c2, c3, c4 = st.columns(4)
c1.metric("Top-1 agreement", f"{sum(agree) / max(len(agree), 1):.0%}")
c2.metric("Mean KL (nats)", f"{sum(kl) / max(len(kl), 1):.4f}")
c3.metric("Perplexity, float", f"{diff.perplexity_float:.2f}")
c4.metric("Perplexity, integer", f"{diff.perplexity_int:.2f}")

left, right = st.columns(2)
with left:
    st.subheader("Float model")
    st.code(analysis.prompt + analysis.float_text, language=None, wrap_lines=True)
with right:
    st.subheader(f"Integer model ({session.backend.label})")
    pieces = [t.text for t in analysis.run.tokens]
    selected = st.session_state.get("token_pick")
    st.markdown(
        f'<div style="font-family:monospace;white-space:pre-wrap;color:#555">{html.escape(analysis.prompt)}</div>'
        + colored_tokens_html(pieces, agree, kl, selected),
        unsafe_allow_html=True,
    )

st.subheader("Inspect a token")
labels = {k: f"{k}: {t.text!r}"[:24] for k, t in enumerate(analysis.run.tokens)}
pick = st.pills("Generated token", list(labels), format_func=labels.get, default=0, key="token_pick")
pick = 0 if pick is None else pick
position = n_prompt - 1 + pick
a, b = st.columns(2)
with a:
    if diff.in_window(position):
        chart(distribution_figure(*diff.logits_at(position), tokenizer), "distribution")
    else:
        st.info(
            f"Next-token distributions are kept for tokens {diff.window_start} on (the sidebar's 'Per-neuron detail'); "
            "choose a later token or a wider window."
        )
with b:
    chart(
        layer_error_figure(diff.tensors, token=position, sites=["attn_norm", "hidden", "o_proj", "residual_attn", "glu", "residual_mlp"]),
        "layer_error_at_token",
    )
st.subheader("Token by token (integer model)")
table = pl.DataFrame(token_table(analysis.run.tokens, tokenizer)).with_columns(
    pl.Series("KL vs float", kl), pl.Series("same top-1", agree)
)
st.dataframe(table, hide_index=True, width="stretch")
table_downloads(table, "tokens")
