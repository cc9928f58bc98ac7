"""Generation: stream tokens from the model and explain each one."""

from __future__ import annotations

import polars as pl
import streamlit as st

from inspector.errors import InspectorError
from inspector.generate import generate, token_table
from inspector.ui.sidebar import render_sidebar

st.title("Generation")
session = render_sidebar()
if session is None:
    st.warning("Choose a model in the sidebar that loads without errors to generate text.")
    st.stop()

st.caption(
    "The float MatMul-free LM continues your prompt one token at a time. It is recurrent: the prompt "
    "is read once, then every new token is a single step that carries one state vector per layer."
)
run_key = (session.loaded.name, session.prompt, session.sampling)
if st.button("Generate", type="primary"):
    progress = st.progress(0.0, text="Generating…")
    output = st.empty()
    steps = []
    try:
        for step in generate(session.loaded.model, session.loaded.tokenizer, session.prompt, **vars(session.sampling)):
            steps.append(step)
            output.code(session.prompt + "".join(s.text for s in steps), language=None, wrap_lines=True)
            progress.progress(len(steps) / session.sampling.max_new_tokens, text=f"{len(steps)} tokens")
    except InspectorError as exc:
        progress.empty()
        st.error(str(exc))
        st.stop()
    progress.empty()
    output.empty()
    st.session_state["generation"] = {"key": run_key, "steps": steps}

result = st.session_state.get("generation")
if not result or result["key"][0] != session.loaded.name:
    st.info("Press **Generate** to continue the prompt.")
    st.stop()

steps = result["steps"]
if result["key"] != run_key:
    st.caption("Settings changed since this text was generated; press Generate to refresh it.")
st.subheader("Text")
st.code(result["key"][1] + "".join(s.text for s in steps), language=None, wrap_lines=True)
st.subheader("Token by token")
st.dataframe(pl.DataFrame(token_table(steps, session.loaded.tokenizer)), hide_index=True, use_container_width=True)
