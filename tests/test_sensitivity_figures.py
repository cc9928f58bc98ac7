"""Figure builders of the sensitivity and local-error views, as plain functions."""

from __future__ import annotations

import math

import polars as pl

from inspector.sweep.results import pareto_front, sensitivity_table
from inspector.views import sensitivity_figures as SF


def _sites() -> pl.DataFrame:
    return pl.DataFrame({
        "layer": [-1, 0, 0, 0], "site": ["embeddings", "attn_norm", "hidden", "o_proj"],
        "local_sqnr_db": [40.0, 35.0, math.inf, 20.0], "cumulative_sqnr_db": [40.0, 33.0, 30.0, 19.0],
        "introduces": [False, True, False, True],
    })


def test_local_cumulative_figure_marks_the_introducing_sites_and_caps_exact_ones():
    fig = SF.local_cumulative_figure(_sites())
    cumulative, local, stars = fig.data
    assert list(local.y) == [40.0, 35.0, 150.0, 20.0]  # the exact site is drawn at the cap
    assert list(stars.x) == ["L0 attn_norm", "L0 o_proj"]
    assert list(SF.local_cumulative_figure(_sites(), ["hidden"]).data[0].x) == ["L0 hidden"]


def test_local_tokens_figure_picks_one_site():
    tokens = pl.DataFrame({"token": [0, 1, 0, 1], "layer": [0, 0, 0, 0], "site": ["a", "a", "b", "b"],
                           "local_sqnr_db": [1.0, 2.0, 3.0, 4.0], "cumulative_sqnr_db": [0.5, 1.0, 2.0, 3.0]})
    fig = SF.local_tokens_figure(tokens, 0, "b")
    assert list(fig.data[1].y) == [3.0, 4.0]


def _points() -> pl.DataFrame:
    rows = [("base", "", "", 2.0, 0.01, 10.0, 1.0), ("lower", "state_bits", "4", 2.5, 0.5, 8.0, 25.0),
            ("lower", "act_bits", "6", 2.1, 0.05, 9.0, 5.0), ("raise", "act_bits", "16", 1.99, 0.005, 11.0, -0.5)]
    return pl.DataFrame([
        {"point_id": f"p{i}", "kind": k, "knob": n, "setting": s, "layer": -1, "label": f"{n}={s}", "status": "ok",
         "bits_per_char": b, "mean_kl": kl, "energy_per_token_uj": e, "delta_bpc_pct": d, "cores": 3, "chips": 1}
        for i, (k, n, s, b, kl, e, d) in enumerate(rows)
    ])


def test_sensitivity_table_and_figure_rank_by_lowered_kl():
    table = sensitivity_table(_points())
    assert table["knob"].to_list() == ["state_bits", "act_bits"]
    assert table.row(1, named=True)["raised_to"] == "16" and table.row(1, named=True)["raise_dkl"] < 0
    assert math.isclose(table.row(0, named=True)["lower_dbpc_pct"], 25.0)
    fig = SF.sensitivity_figure(table)
    assert list(fig.data[0].y) == ["state_bits=4", "act_bits=6"]
    assert list(fig.data[0].x) == table["lower_dkl"].to_list()


def test_pareto_figure_shows_the_front_and_the_winner():
    points = _points()
    front = pareto_front(points)
    assert front["point_id"].to_list() == ["p1", "p2", "p0", "p3"]  # each cheaper point loses more
    dominated = points.with_columns(
        pl.when(pl.col("point_id") == "p0").then(30.0).otherwise(pl.col("delta_bpc_pct")).alias("delta_bpc_pct"),
    )
    assert "p0" not in pareto_front(dominated)["point_id"].to_list()
    fig = SF.pareto_figure(points, front, winner_id="p2")
    assert len(fig.data) == 3 and list(fig.data[2].x) == [9.0]


def test_ab_figures():
    sites = pl.DataFrame({"layer": [0, 0], "site": ["a", "b"], "sqnr_a": [20.0, 30.0], "sqnr_b": [21.0, 25.0]})
    assert list(SF.ab_sites_figure(sites).data[1].y) == [21.0, 25.0]
    tokens = pl.DataFrame({"token": [0, 1], "kl_a": [0.1, 0.2], "kl_b": [0.3, 0.4]})
    assert list(SF.ab_tokens_figure(tokens).data[0].y) == [0.1, 0.2]


def test_pareto_figure_marks_event_driven_points():
    points = _points().with_columns(
        pl.Series("messaging", ["dense", "delta vth=4 (all groups)", "dense", "dense"][: _points().height]),
        pl.Series("messages_per_token", [100.0, 60.0, 100.0, 100.0][: _points().height]),
    )
    fig = SF.pareto_figure(points, pareto_front(points))
    names = [trace.name for trace in fig.data]
    assert names[:2] == ["evaluated", "event-driven messaging"]
    assert list(fig.data[1].text) == points.filter(pl.col("messaging") != "dense")["label"].to_list()
