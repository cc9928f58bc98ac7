"""Loihi LM Inspector: entry point. Lays out the navigation and the shared sidebar, nothing else."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Loihi LM Inspector", page_icon="🧠", layout="wide")

PAGES = [
    st.Page("pages/generation.py", title="Generation", icon="✍️", default=True),
]

navigation = st.navigation(PAGES)
navigation.run()
