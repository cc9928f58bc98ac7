"""The preset "Loihi 2, fitted to the paper's 370M measurement": four constants from five measured figures.

The paper measured MMfreeLM-370M on 24 Loihi 2 chips, one block per chip (`inspector.chip.paper.MEASURED_24`):
generation tokens/s and mJ/token, prefill tokens/s and mJ/token, time to first token of a 500-token
prompt. The time and energy model (`inspector.chip.estimate`) turns an activity table and `OpCosts` into the
same five figures. Starting from the "Loihi 2 (Intel's statements)" costs, four constants are left
free and fitted by least squares on the relative residuals (estimate / measured - 1):

- `sync_scale`: the synchronization floor (barrier and its growth with chips) as a multiple of the
  first-Loihi barrier curve;
- `time_scale`: every per-operation time as a multiple of Intel's statements (the busiest core's work);
- `static_w_per_chip`;
- `energy_scale`: one factor on every per-operation energy (first Loihi's figures). A common scale is
  all five figures can tell: they hold one dynamic energy per token, so energies per synaptic op,
  neuron update and message cannot be told apart.

What the core map knows is not fitted: the time steps a token takes (the stages of the one-block-per-
chip map), the chips that synchronize (24) and the chip crossings on a token's path (23).

The activity is this project's own measurement of the published 370M configuration (random weights
with the reference initialization, default QuantConfig, 32 tokens; `inspector.chip.published`),
pinned as a small table (`PINNED`: per token and stage, the busiest core's operations, and the mean
operations per token) so that the fit is reproducible without a 370M run. `inspector.chip.costs.FITTED`
holds the fit's result; `tests/test_chip_fit.py` re-runs the fit and checks that it still lands there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from inspector.chip.costs import FITTED, OpCosts, check_chips, fitted_costs, preset
from inspector.chip.estimate import DEFAULT_PROMPT_TOKENS, stage_path
from inspector.chip.paper import MEASURED_24, SINGLE_CHIP

PINNED = Path(__file__).resolve().parents[1] / "data" / "fit_370m_one_block_per_chip.parquet"
BASE_PRESET = "Loihi 2 (Intel's statements)"
PARAMS = ("sync_scale", "time_scale", "static_w_per_chip", "energy_scale")
TIME_FIELDS = ("synop_ns", "neuron_update_ns", "neuron_inactive_ns", "message_ns")
COUNT_COLUMNS = ("synops", "active_neurons", "inactive_neurons", "messages")


@dataclass(frozen=True)
class FitTable:
    """What the five figures depend on, reduced from an activity table under the base costs.

    stages: per token and stage, the busiest core's operations (the core whose work is longest
    under the base times; a common time scale does not change which core that is).
    """

    stages: pl.DataFrame  # token, layer, group, synops, active_neurons, inactive_neurons, messages (of the busiest core)
    dynamic: dict[str, float]  # mean operations per token: synops, active_neurons, inactive_neurons, messages
    chips: int
    crossings: int
    model: str = "MMfreeLM-370M"

    def save(self, path: Path) -> None:
        meta = {"chips": self.chips, "crossings": self.crossings, "model": self.model}
        meta |= {f"dyn_{k}": v for k, v in self.dynamic.items()}
        self.stages.with_columns(pl.lit(json.dumps(meta, sort_keys=True)).alias("meta")).write_parquet(path, compression="zstd")

    @property
    def steps_per_token(self) -> int:
        return self.stages.filter(pl.col("token") == self.stages["token"].min()).height

    @classmethod
    def load(cls, path: Path = PINNED) -> "FitTable":
        table = pl.read_parquet(path)
        meta = json.loads(table["meta"][0])
        dynamic = {k[4:]: float(v) for k, v in meta.items() if k.startswith("dyn_")}
        return cls(table.drop("meta"), dynamic, int(meta["chips"]), int(meta["crossings"]), str(meta["model"]))


def fit_table(activity: pl.DataFrame, chips: int, model: str = "MMfreeLM-370M") -> FitTable:
    """Reduce a token x core activity table (`inspector.chip.activity.core_activity`) for the fit."""
    check_chips(chips)
    base = preset(BASE_PRESET).costs
    counts = activity.with_columns((pl.col("neuron_updates") - pl.col("active_neurons")).alias("inactive_neurons"))
    per_core = counts.group_by(["token", "layer", "group", "core"]).agg(pl.col(*COUNT_COLUMNS).sum())
    per_core = per_core.with_columns(_work_ns(base).alias("work_ns"))
    stages = (
        per_core.sort(["token", "layer", "group", "work_ns", "core"], descending=[False, False, False, True, False])
        .group_by(["token", "layer", "group"], maintain_order=True).first()
        .select("token", "layer", "group", *COUNT_COLUMNS)
        .sort(["token", "layer", "group"])
    )
    tokens = counts["token"].n_unique()
    dynamic = {c: float(counts[c].sum()) / tokens for c in COUNT_COLUMNS}
    crossings = int(stage_path(activity)["crossing"].sum())
    return FitTable(stages.with_columns(pl.col(*COUNT_COLUMNS).cast(pl.Int64)), dynamic, chips, crossings, model)


def _work_ns(c: OpCosts) -> pl.Expr:
    return (
        pl.col("synops") * c.synop_ns + pl.col("active_neurons") * c.neuron_update_ns
        + pl.col("inactive_neurons") * c.neuron_inactive_ns + pl.col("messages") * c.message_ns
    )


def figures(table: FitTable, costs: OpCosts, prompt_tokens: int = DEFAULT_PROMPT_TOKENS, chips: int | None = None,
            crossings: int | None = None) -> dict[str, float]:
    """The five figures of `inspector.chip.paper.MEASURED_24` from a reduced table: the same arithmetic as
    `inspector.chip.estimate.estimate` (the tests check they agree), fast enough for a least-squares loop."""
    chips = table.chips if chips is None else chips
    crossings = table.crossings if crossings is None else crossings
    work = table.stages.select(_work_ns(costs).alias("w"), "token")
    floor = costs.sync_floor_ns(chips)
    stage = np.maximum(work["w"].to_numpy(), floor)
    token = work["token"].to_numpy()
    _, index = np.unique(token, return_inverse=True)
    latency_ns = np.bincount(index, weights=stage).mean() + crossings * costs.chip_crossing_ns
    interval = np.zeros(index.max() + 1)
    np.maximum.at(interval, index, stage)
    interval_ns = interval.mean()
    d = table.dynamic
    dynamic_mj = (
        d["synops"] * costs.synop_pj + d["active_neurons"] * costs.neuron_update_pj
        + d["inactive_neurons"] * costs.neuron_inactive_pj + d["messages"] * costs.message_pj
    ) * 1e-9
    static_w = chips * costs.static_w_per_chip
    return {
        "gen_tps": 1e9 / latency_ns,
        "gen_mj": static_w * latency_ns * 1e-6 + dynamic_mj,
        "prefill_tps": 1e9 / interval_ns,
        "prefill_mj": static_w * interval_ns * 1e-6 + dynamic_mj,
        "ttft_s": (latency_ns + (prompt_tokens - 1) * interval_ns) * 1e-9,
        "dynamic_mj": dynamic_mj,
    }


@dataclass(frozen=True)
class FitResult:
    params: dict[str, float]
    costs: OpCosts
    figures: dict[str, float]  # our five figures under the fitted costs
    residuals: dict[str, float]  # estimate / measured - 1
    table: FitTable

    @property
    def worst(self) -> float:
        return max(abs(r) for r in self.residuals.values())


# Starting points of the least squares: the floor-bound and the work-bound regimes of the model meet
# at a kink (a step is the longer of the two), where a local method can stall, so it starts from a
# small fixed grid and keeps the best end point (deterministic: same table, same fit).
STARTS = tuple((s, k, 0.7, 0.4) for s in (1.0, 3.0, 10.0, 30.0) for k in (1.0, 2.0, 3.0, 5.0))


def fit(
    table: FitTable, targets: dict[str, float] | None = None, make_costs=fitted_costs, starts=STARTS,
) -> FitResult:
    """Least squares on the relative residuals of the five figures; the constants are fitted in
    log space, so each stays positive."""
    targets = targets or {f.name: f.loihi for f in MEASURED_24}
    names = list(targets)
    goal = np.array([targets[n] for n in names])

    def residuals(log_params: np.ndarray) -> np.ndarray:
        got = figures(table, make_costs(*np.exp(log_params)))
        return np.array([got[n] for n in names]) / goal - 1

    best = None
    for start in starts:
        result = least_squares(residuals, np.log(np.asarray(start, dtype=float)), method="lm", xtol=1e-12, ftol=1e-12)
        if best is None or result.cost < best.cost:
            best = result
    params = dict(zip(PARAMS, (float(v) for v in np.exp(best.x)), strict=True))
    costs = make_costs(*params.values())
    got = figures(table, costs)
    return FitResult(params, costs, got, {n: got[n] / targets[n] - 1 for n in names}, table)


def pin(measured, path: Path = PINNED) -> FitTable:
    """Write the pinned table from a measurement of the 370M configuration (`published_activity`):
    its activity summed onto the one-block-per-chip core map of the default limits, then reduced."""
    from inspector.chip.activity import core_activity
    from inspector.chip.limits import HardwareConfig
    from inspector.chip.mapper import ONE_BLOCK_PER_CHIP, map_groups

    core_map = map_groups(measured.groups, HardwareConfig(), False, ONE_BLOCK_PER_CHIP)
    table = fit_table(core_activity(measured.activity, core_map), core_map.chips, measured.model)
    table.save(path)
    return table


def fit_paper(table: FitTable | None = None) -> FitResult:
    """The fit behind the preset: the pinned 370M table against the paper's 24-chip measurement."""
    return fit(table or FitTable.load())


def fitted_preset_costs() -> OpCosts:
    return fitted_costs(*(FITTED[p] for p in PARAMS))


def single_chip(table: FitTable, costs: OpCosts) -> dict[str, float]:
    """Held out of the fit: the same stages with every core on one chip (no crossings, one chip's floor
    and static power), beside the paper's single-chip estimate of 71.3 tokens/s and 59 mJ/token."""
    return figures(table, costs, chips=1, crossings=0)


def single_chip_table(table: FitTable, costs: OpCosts) -> pl.DataFrame:
    ours = single_chip(table, costs)
    return pl.DataFrame(
        {
            "figure": ["generation throughput (tokens/s)", "generation energy (mJ/token)"],
            "paper's single-chip estimate": [SINGLE_CHIP["gen_tps"], SINGLE_CHIP["gen_mj"]],
            "our single-chip estimate (not fitted)": [ours["gen_tps"], ours["gen_mj"]],
            "ratio (ours / paper)": [ours["gen_tps"] / SINGLE_CHIP["gen_tps"], ours["gen_mj"] / SINGLE_CHIP["gen_mj"]],
        }
    )


def replace_costs(costs: OpCosts, **changes: float) -> OpCosts:
    return dataclasses.replace(costs, **changes)
