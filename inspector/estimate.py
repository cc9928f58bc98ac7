"""Loihi 2 time and energy per token, from measured activity and per-operation costs.

Inputs: an activity table (token x core: synaptic ops, neuron updates, messages; see
`inspector.emulator.activity`), the number of chips the core map uses, and `OpCosts`
(`inspector.costs`, every number with its source).

Time. A core's work on a token is synops * t_syn + updates * t_neuron + messages * t_msg. The
groups of the layer stack run one after the other (a stage per neuron group); within a stage all
cores work in parallel, so the stage lasts as long as its busiest core, plus one time-step barrier.
- Generation (each token waits for the previous one): latency = sum of the stage times; tokens/s =
  1 / latency.
- Prefill (the prompt is known, tokens are pipelined through the stages): one token leaves the
  pipeline per slowest stage; tokens/s = 1 / slowest stage.
- Time to first token for a P-token prompt: the first prompt token's full latency plus P - 1
  pipeline intervals (the first generated token comes out of the last prompt token's pass). Host
  work (embedding, LM head, sampling) and chip-to-host transfer are not included.

Energy per token = dynamic + static. Dynamic = synops * e_syn + updates * e_neuron + messages *
e_msg, whatever the phase. Static = chips * P_idle * (time the token occupies the chips): the full
latency in generation, one pipeline interval in prefill. Per layer and group, static energy is
attributed by stage time (the whole system idles at P_idle while that stage runs).

Everything is a mean over the measured tokens (prompt and generated: a token costs the same work
either way; only the timing differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from inspector.costs import OpCosts

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
    per_group: pl.DataFrame  # layer, group, stage_ns, synops_uj, neuron_uj, message_uj, static_uj (means per token)
    generation: PhaseFigures
    prefill: PhaseFigures
    prompt_tokens: int
    time_to_first_token_s: float
    chips: int

    @property
    def energy_per_token_mj(self) -> float:
        return self.generation.energy_per_token_mj

    @property
    def latency_per_token_ms(self) -> float:
        return self.generation.seconds_per_token * 1e3

    def per_layer(self) -> pl.DataFrame:
        """The per-group breakdown summed per layer (layer -1: the final norm)."""
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
        return pl.DataFrame(rows)


def estimate(
    activity: pl.DataFrame, chips: int, costs: OpCosts | None = None, prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
) -> Estimate:
    c = costs or OpCosts()
    if activity.height == 0:
        raise ValueError("no activity to estimate from (the run recorded no tokens)")
    if prompt_tokens < 1:
        raise ValueError(f"the prompt needs at least one token, got {prompt_tokens}")
    tokens = activity["token"].n_unique()
    work = activity.with_columns(
        (
            pl.col("synops") * c.synop_ns + pl.col("neuron_updates") * c.neuron_update_ns + pl.col("messages") * c.message_ns
        ).alias("core_ns"),
        (pl.col("synops") * c.synop_pj * 1e-6).alias("synops_uj"),
        (pl.col("neuron_updates") * c.neuron_update_pj * 1e-6).alias("neuron_uj"),
        (pl.col("messages") * c.message_pj * 1e-6).alias("message_uj"),
    )
    # a shared core's segments of one group run together: sum per (token, stage, core) first
    stage = (
        work.group_by(["token", "layer", "group", "core"]).agg(pl.col("core_ns").sum())
        .group_by(["token", "layer", "group"]).agg((pl.col("core_ns").max() + c.barrier_ns).alias("stage_ns"))
    )
    timing = stage.group_by("token").agg(
        pl.col("stage_ns").sum().alias("latency_ns"), pl.col("stage_ns").max().alias("interval_ns"),
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
        .agg((pl.col("synops_uj", "neuron_uj", "message_uj").sum() / tokens), pl.col("core").min().alias("first_core"))
        .join(stage.group_by(["layer", "group"]).agg(pl.col("stage_ns").mean()), on=["layer", "group"])
        .with_columns((static_w * pl.col("stage_ns") * 1e-3).alias("static_uj"))
        .sort("first_core")  # data-flow order, as the core map lays the groups out
        .select("layer", "group", "stage_ns", "static_uj", "synops_uj", "neuron_uj", "message_uj")
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
    )
