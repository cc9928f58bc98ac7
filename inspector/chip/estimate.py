"""Loihi 2 time and energy per token, from measured activity and per-operation costs.

Inputs: an activity table (token x core: synaptic ops, neuron updates, neurons that sent a message,
messages; see `inspector.chip.activity`, whose counts follow whatever the probes count), the
chip of every core (the core map's layout), and `OpCosts` (`inspector.chip.costs`, every number with
its source).

Time. A token crosses the fused neuron groups of the core map one after the other, one time step
per group (a *stage*), in data-flow order. A core's work on a token is synops * t_syn + active
updates * t_active + silent updates * t_inactive + messages * t_msg; a step lasts as long as its
busiest core's work or the synchronization floor, whichever is longer. The floor grows with the
chips that synchronize: floor = barrier + barrier_per_doubling * log2(chips). A message that goes
from one stage's chips to the next stage's (a *crossing*, counted from the core map) adds the
chip-crossing latency.
- Generation (each token waits for the previous one): latency = the sum of the stage times + the
  crossings; tokens/s = 1 / latency.
- Prefill (the prompt is known): once the pipeline is full one token leaves it per step, so
  tokens/s = 1 / the slowest stage.
- Time to first token for a P-token prompt: the first prompt token's full latency plus P - 1
  pipeline intervals. Host work (embedding, LM head unless mapped on chip, sampling) is not included.

Energy per token = static power x chips x the time the token occupies the system (its latency in
generation, one step in prefill) + the dynamic cost of the counted operations (the same in both
phases). Per layer and group, static energy is attributed by stage time (and crossing time).

Everything is a mean over the measured tokens (prompt and generated: a token costs the same work
either way; only the timing differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from inspector import schema as S
from inspector.chip.costs import FITTED_NAME, OpCosts, check_chips, preset
from inspector.chip.mapper import GROUP_ORDER, LM_HEAD

DEFAULT_PROMPT_TOKENS = 500  # the paper's time-to-first-token prompt length


@dataclass
class PhaseFigures:
    """One phase (prefill or generation): throughput and energy per token, split by kind."""

    tokens_per_s: float
    seconds_per_token: float
    static_mj: float
    synops_mj: float
    neuron_mj: float
    message_mj: float

    @property
    def dynamic_mj(self) -> float:
        return self.synops_mj + self.neuron_mj + self.message_mj

    @property
    def energy_per_token_mj(self) -> float:
        return self.static_mj + self.dynamic_mj


@dataclass
class Estimate:
    per_token: pl.DataFrame  # token, energy_uj (generation: dynamic + static), latency_us, synops, messages, neuron_updates
    per_group: pl.DataFrame  # layer, group, stage_ns, crossing_ns, static_uj, synops_uj, neuron_uj, message_uj (per token)
    generation: PhaseFigures
    prefill: PhaseFigures
    prompt_tokens: int
    time_to_first_token_s: float
    chips: int
    steps_per_token: int = 0  # sequential time steps a token takes (stages of the core map)
    crossings: int = 0  # chip-to-chip crossings on a token's path
    sync_floor_ns: float = 0.0

    @property
    def energy_per_token_mj(self) -> float:
        return self.generation.energy_per_token_mj

    @property
    def latency_per_token_ms(self) -> float:
        return self.generation.seconds_per_token * 1e3

    def per_layer(self) -> pl.DataFrame:
        """The per-group breakdown summed per layer (layer -1: the final norm, and the LM head when on chip)."""
        return self.per_group.group_by("layer").agg(pl.exclude("layer", "group").sum()).sort("layer")

    def summary(self) -> pl.DataFrame:
        """Both phases side by side, one row per figure."""
        rows = []
        for phase, f in (("prefill", self.prefill), ("generation", self.generation)):
            rows += [
                {"phase": phase, "figure": "tokens/s", "value": f.tokens_per_s},
                {"phase": phase, "figure": "energy per token (mJ)", "value": f.energy_per_token_mj},
                {"phase": phase, "figure": "  static (mJ)", "value": f.static_mj},
                {"phase": phase, "figure": "  synaptic ops (mJ)", "value": f.synops_mj},
                {"phase": phase, "figure": "  neuron updates (mJ)", "value": f.neuron_mj},
                {"phase": phase, "figure": "  messages (mJ)", "value": f.message_mj},
            ]
        ttft = f"time to first token, {self.prompt_tokens}-token prompt (s)"
        rows.append({"phase": "prefill", "figure": ttft, "value": self.time_to_first_token_s})
        rows += [
            {"phase": "both", "figure": "time steps per token (stages of the core map)", "value": float(self.steps_per_token)},
            {"phase": "both", "figure": "chip crossings per token", "value": float(self.crossings)},
            {"phase": "both", "figure": f"synchronization floor, {self.chips} chips (us)", "value": self.sync_floor_ns / 1e3},
        ]
        return pl.DataFrame(rows)


def stage_path(activity: pl.DataFrame) -> pl.DataFrame:
    """The stages a token crosses, in data-flow order (by first core), with the chip crossing before each.

    A crossing is counted between consecutive stages whose cores are not all on one chip: a message
    then leaves a chip. Columns: layer, group, first_core, crossing (0 or 1).
    """
    rank = {name: i for i, name in enumerate((*GROUP_ORDER, S.FINAL_NORM_GROUP, LM_HEAD))}
    stages = (
        activity.group_by(["layer", "group"])
        .agg(pl.col("core").min().alias("first_core"), pl.col("chip").unique().sort().alias("chips"))
        # groups sharing a core start on the same one: data-flow order breaks the tie
        .with_columns(pl.col("group").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("rank"))
        .sort(["first_core", "rank"])
        .drop("rank")
    )
    chips = stages["chips"].to_list()
    crossing = [0] + [int(len(set(a) | set(b)) > 1) for a, b in zip(chips[:-1], chips[1:], strict=True)]
    return stages.drop("chips").with_columns(pl.Series("crossing", crossing, dtype=pl.Int64))


def estimate(
    activity: pl.DataFrame, chips: int, costs: OpCosts | None = None, prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
) -> Estimate:
    # Without costs given: the preset fitted to the paper's measured 24-chip system, the Hardware
    # page's default (sweeps, A/B and the Learn tour then speak of the same chip as that page).
    c = costs or preset(FITTED_NAME).costs
    if activity.height == 0:
        raise ValueError("no activity to estimate from (the run recorded no tokens)")
    if not isinstance(prompt_tokens, int) or prompt_tokens < 1:
        raise ValueError(f"the prompt needs at least one token, got {prompt_tokens}")
    check_chips(chips)
    tokens = activity["token"].n_unique()
    inactive = pl.col("neuron_updates") - pl.col("active_neurons")
    work = activity.with_columns(
        (
            pl.col("synops") * c.synop_ns + pl.col("active_neurons") * c.neuron_update_ns + inactive * c.neuron_inactive_ns
            + pl.col("messages") * c.message_ns
        ).alias("core_ns"),
        (pl.col("synops") * c.synop_pj * 1e-6).alias("synops_uj"),
        ((pl.col("active_neurons") * c.neuron_update_pj + inactive * c.neuron_inactive_pj) * 1e-6).alias("neuron_uj"),
        (pl.col("messages") * c.message_pj * 1e-6).alias("message_uj"),
    )
    floor_ns = c.sync_floor_ns(chips)
    path = stage_path(activity).with_columns((pl.col("crossing") * c.chip_crossing_ns).alias("crossing_ns"))
    crossing_ns = float(path["crossing_ns"].sum())
    # a shared core's segments of one group run together: sum per (token, stage, core) first
    stage = (
        work.group_by(["token", "layer", "group", "core"]).agg(pl.col("core_ns").sum())
        .group_by(["token", "layer", "group"]).agg(pl.max_horizontal(pl.col("core_ns").max(), floor_ns).alias("stage_ns"))
    )
    timing = stage.group_by("token").agg(
        (pl.col("stage_ns").sum() + crossing_ns).alias("latency_ns"), pl.col("stage_ns").max().alias("interval_ns"),
    )
    static_w = chips * c.static_w_per_chip
    totals = work.group_by("token").agg(
        pl.col("synops", "messages", "neuron_updates", "synops_uj", "neuron_uj", "message_uj").sum(),
    )
    per_token = (
        totals.join(timing, on="token")
        .with_columns(
            (
                pl.col("synops_uj") + pl.col("neuron_uj") + pl.col("message_uj") + static_w * pl.col("latency_ns") * 1e-3
            ).alias("energy_uj"),
            (pl.col("latency_ns") * 1e-3).alias("latency_us"),
        )
        .sort("token")
    )
    per_group = (
        work.group_by(["layer", "group"])
        .agg((pl.col("synops_uj", "neuron_uj", "message_uj").sum() / tokens))
        .join(stage.group_by(["layer", "group"]).agg(pl.col("stage_ns").mean()), on=["layer", "group"])
        .join(path.select("layer", "group", "first_core", "crossing_ns"), on=["layer", "group"])
        .with_columns((static_w * (pl.col("stage_ns") + pl.col("crossing_ns")) * 1e-3).alias("static_uj"))
        .join(path.with_row_index("order").select("layer", "group", "order"), on=["layer", "group"])
        .sort("order")  # data-flow order, as the core map lays the groups out
        .select("layer", "group", "stage_ns", "crossing_ns", "static_uj", "synops_uj", "neuron_uj", "message_uj")
    )
    latency_s = float(per_token["latency_ns"].mean()) * 1e-9
    interval_s = float(per_token["interval_ns"].mean()) * 1e-9
    dyn = {k: float(per_token[k].mean()) * 1e-3 for k in ("synops_uj", "neuron_uj", "message_uj")}

    def phase(seconds: float) -> PhaseFigures:
        return PhaseFigures(
            1.0 / seconds, seconds, static_w * seconds * 1e3, dyn["synops_uj"], dyn["neuron_uj"], dyn["message_uj"],
        )

    return Estimate(
        per_token=per_token.select("token", "energy_uj", "latency_us", "synops", "messages", "neuron_updates"),
        per_group=per_group,
        generation=phase(latency_s),
        prefill=phase(interval_s),
        prompt_tokens=prompt_tokens,
        time_to_first_token_s=latency_s + (prompt_tokens - 1) * interval_s,
        chips=chips,
        steps_per_token=path.height,
        crossings=int(path["crossing"].sum()),
        sync_floor_ns=floor_ns,
    )
