"""Loihi LM Inspector: entry point. Lays out the navigation; every page renders the shared sidebar."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Loihi LM Inspector", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("pages/generation.py", title="Generation", icon="✍️", default=True),
    st.Page("pages/spike_activity.py", title="Spike activity", icon="⚡"),
    st.Page("pages/saturation.py", title="State saturation", icon="📈"),
    st.Page("pages/quantization_error.py", title="Quantization error", icon="🎯"),
    st.Page("pages/hardware.py", title="Hardware", icon="🔲"),
    st.Page("pages/learn.py", title="Learn", icon="🎓"),
]

st.navigation(PAGES).run()
