"""Download buttons: tables as CSV or Parquet, figures as standalone HTML.

PNG export of every chart is the camera button in the chart's own toolbar (Plotly renders it in
the browser), so no image-rendering engine is needed on the server.
"""

from __future__ import annotations

import io

import plotly.graph_objects as go
import polars as pl
import streamlit as st


def table_downloads(table: pl.DataFrame, name: str) -> None:
    parquet = io.BytesIO()
    table.write_parquet(parquet)
    left, right = st.columns(2)
    left.download_button(f"{name}.csv", table.write_csv().encode(), f"{name}.csv", "text/csv", key=f"csv_{name}")
    right.download_button(f"{name}.parquet", parquet.getvalue(), f"{name}.parquet", "application/octet-stream", key=f"pq_{name}")


def chart(fig: go.Figure, name: str) -> None:
    """Show a figure with an HTML download under it."""
    st.plotly_chart(fig, width="stretch", key=f"chart_{name}")
    st.download_button(
        "Download figure (HTML)", fig.to_html(include_plotlyjs="cdn").encode(), f"{name}.html", "text/html", key=f"html_{name}"
    )
