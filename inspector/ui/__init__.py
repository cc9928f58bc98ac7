"""Streamlit glue shared by the pages: the sidebar and the caches. Computation stays in `inspector`."""
