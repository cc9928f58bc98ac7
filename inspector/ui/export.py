"""Download buttons: tables as CSV or Parquet, figures as self-contained HTML, the whole run as a zip.

Every file carries the run's metadata (see `inspector.views.exports`); the page's `page_analysis` puts it
in the session so that these helpers need no extra argument. Files are built only when a button is
clicked (Streamlit calls the data function then), so a page with many buttons stays fast, and a
click does not rerun the page.

PNG export of every chart is the camera button in the chart's own toolbar (Plotly renders it in
the browser), so no image-rendering engine is needed on the server.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from inspector.views.exports import COLUMNS, csv_bytes, figures_html, parquet_bytes

METADATA_KEY = "export_metadata"


def set_metadata(metadata: dict[str, Any]) -> None:
    st.session_state[METADATA_KEY] = metadata


def _metadata() -> dict[str, Any] | None:
    return st.session_state.get(METADATA_KEY)


def table_downloads(table: pl.DataFrame, name: str, note: str = "") -> None:
    metadata = _metadata()
    left, right = st.columns(2)
    left.download_button(
        f"{name}.csv", lambda: csv_bytes(table, metadata, note), f"{name}.csv", "text/csv", key=f"csv_{name}", on_click="ignore"
    )
    right.download_button(
        f"{name}.parquet", lambda: parquet_bytes(table, metadata), f"{name}.parquet", "application/octet-stream",
        key=f"pq_{name}", on_click="ignore",
    )


def column_help(table: pl.DataFrame) -> dict[str, Any]:
    """st.dataframe column configs whose tooltips give each column's unit and meaning."""
    config = {}
    for column in table.columns:
        if column in COLUMNS:
            unit, description = COLUMNS[column]
            config[column] = st.column_config.Column(help=f"{description}{f' ({unit})' if unit else ''}")
    return config


def thousands(table: pl.DataFrame) -> dict[str, Any]:
    """Column configs that print every integer column with thousands separators (1,234,567)."""
    return {c: st.column_config.NumberColumn(format="localized") for c, dtype in table.schema.items() if dtype.is_integer()}


def chart(fig: go.Figure, name: str) -> None:
    """Show a figure with a download of it as one HTML file that draws offline (plotly.js inside)."""
    st.plotly_chart(fig, width="stretch", key=f"chart_{name}")
    metadata = _metadata()
    title = fig.layout.title.text or name
    st.download_button(
        "Download figure (HTML)", lambda: figures_html({title: fig}, metadata, title).encode(), f"{name}.html", "text/html",
        key=f"html_{name}", on_click="ignore",
    )
