"""Reading a sweep: the ranked sensitivity table, the search's Pareto front, the failed points."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from inspector.sweep.runner import META_FILE, load_results
from inspector.sweep.study import SEARCH_FILE, WINNER_FILE


def _ok(points: pl.DataFrame) -> pl.DataFrame:
    return points.filter(pl.col("status") == "ok") if points.height else points


def base_row(points: pl.DataFrame) -> dict[str, Any] | None:
    base = _ok(points).filter(pl.col("kind") == "base") if points.height else points
    return base.row(0, named=True) if base.height else None


def sensitivity_table(points: pl.DataFrame) -> pl.DataFrame:
    """One row per knob (and layer, for per-layer points): the change in bits/char (percent of the
    base's) and in mean KL when lowered and when raised, ranked by the KL lowering adds.

    Ranked by KL, not bits/char: on a few hundred tokens a lowered knob can lower bits/char by
    chance, while the KL from the float model measures the distortion itself."""
    base = base_row(points)
    schema = {"rank": pl.Int64, "knob": pl.Utf8, "layer": pl.Utf8, "lowered_to": pl.Utf8, "lower_dbpc_pct": pl.Float64,
              "lower_dkl": pl.Float64, "raised_to": pl.Utf8, "raise_dbpc_pct": pl.Float64, "raise_dkl": pl.Float64}
    if base is None:
        return pl.DataFrame(schema=schema)
    changed = _ok(points).filter(pl.col("kind").is_in(["lower", "raise"])).with_columns(
        (100 * (pl.col("bits_per_char") / base["bits_per_char"] - 1)).alias("dbpc_pct"),
        (pl.col("mean_kl") - base["mean_kl"]).alias("dkl"),
        pl.when(pl.col("layer") < 0).then(pl.lit("all")).otherwise(pl.col("layer").cast(pl.Utf8)).alias("where"),
    )
    lower = changed.filter(pl.col("kind") == "lower").select(
        "knob", "where", pl.col("setting").alias("lowered_to"), pl.col("dbpc_pct").alias("lower_dbpc_pct"),
        pl.col("dkl").alias("lower_dkl")
    )
    raised = changed.filter(pl.col("kind") == "raise").select(
        "knob", "where", pl.col("setting").alias("raised_to"), pl.col("dbpc_pct").alias("raise_dbpc_pct"),
        pl.col("dkl").alias("raise_dkl")
    )
    table = lower.join(raised, on=["knob", "where"], how="full", coalesce=True).rename({"where": "layer"})
    table = table.sort("lower_dkl", descending=True, nulls_last=True)
    # ranked separately: whole-model knobs among themselves, single-layer points among themselves
    rank = pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over(pl.col("layer") == "all")
    return table.with_columns(rank.alias("rank")).select(list(schema))


def pareto_front(points: pl.DataFrame, cost: str = "energy_per_token_uj", loss: str = "delta_bpc_pct") -> pl.DataFrame:
    """The evaluated configs no other config beats on both cost and loss (all-layer points only)."""
    candidates = _ok(points).filter(pl.col("layer") < 0).sort([cost, loss])
    front, best = [], float("inf")
    for row in candidates.iter_rows(named=True):
        if row[loss] < best:
            front.append(row)
            best = row[loss]
    return pl.DataFrame(front, schema=candidates.schema) if front else candidates.clear()


def failed_points(points: pl.DataFrame) -> pl.DataFrame:
    if not points.height:
        return points
    return points.filter(pl.col("status") != "ok").select("label", "error")


def read_sweep(out_dir: str | Path) -> dict[str, Any]:
    """Everything a finished or running sweep directory holds (points, metadata, search, winner)."""
    out_dir = Path(out_dir)
    points = load_results(out_dir)
    meta_path, search_path = out_dir / META_FILE, out_dir / SEARCH_FILE
    return {
        "points": points,
        "meta": json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {},
        "search": json.loads(search_path.read_text(encoding="utf-8")) if search_path.is_file() else None,
        "winner_file": out_dir / WINNER_FILE if (out_dir / WINNER_FILE).is_file() else None,
    }
