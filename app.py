"""Loihi LM Inspector: entry point. Lays out the navigation; every page renders the shared sidebar."""

from __future__ import annotations

# pandas before anything draws: Plotly looks pandas up in sys.modules without importing it, so while
# one session's thread is still importing pandas, another session's figure would find the module half
# initialized ("partially initialized module 'pandas' has no attribute 'Series"). An import statement
# here waits on Python's import lock until pandas is whole, in every session's thread.
import pandas  # noqa: F401
import streamlit as st

from inspector.serve.stack_dumps import enable_stack_dumps

enable_stack_dumps()  # `kill -USR1 <pid>` prints every thread's stack to the server's terminal
st.set_page_config(page_title="Loihi LM Inspector", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("pages/generation.py", title="Generation", icon=":material/edit_note:", default=True),
    st.Page("pages/spike_activity.py", title="Spike activity", icon=":material/bolt:"),
    st.Page("pages/saturation.py", title="State saturation", icon=":material/speed:"),
    st.Page("pages/quantization_error.py", title="Quantization error", icon=":material/compare_arrows:"),
    st.Page("pages/sensitivity.py", title="Sensitivity", icon=":material/tune:"),
    st.Page("pages/hardware.py", title="Hardware", icon=":material/memory:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
]

st.navigation(PAGES).run()
