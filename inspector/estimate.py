"""Loihi 2 throughput, latency and energy per token, estimated from the measured activity.

The estimate multiplies what the emulator counted (synaptic operations, neuron updates, messages,
per core and token) by per-operation costs, and adds static power for the chips the core map uses.

Per-operation costs: Intel has not published per-operation energy or time for Loihi 2. We use the
figures measured on the first Loihi (Davies et al., "Loihi: A Neuromorphic Manycore Processor with
On-Chip Learning", IEEE Micro 38(1), 2018, Table 2: about 23.6 pJ and 3.5 ns per synaptic
operation, about 52 pJ and 8 ns per neuron update, about 1.7 pJ and 2 ns per spike message within
a tile plus 3-4 pJ per mesh hop). Loihi 2 is a newer process (Intel 4) and should be at or below
these, so the estimate is conservative. Static power: about 1 W per chip (Intel's public Loihi 2
descriptions). `barrier_ns` is the time-step synchronization cost, an assumption.

Timing model: within one algorithmic time step every core works in parallel and the step lasts as
long as its busiest core; a token passes the groups of the layer stack one after the other, so its
latency is the sum over groups of the busiest core's time. During prefill tokens are pipelined
(one new token per step of the slowest group); during generation each token waits for the last.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

# The seed paper's published comparison (arXiv 2503.18002, abstract and results), for display.
PAPER_FIGURES = (
    ("Throughput vs transformer LLMs on an edge GPU (Jetson Orin Nano)", "up to 3x higher"),
    ("Energy per token vs the same baselines", "about 2x lower"),
    ("Time to first token (500-token prompt, batch 1)", "6.6x lower"),
    ("Accuracy of the quantized 370M model vs float", "no loss"),
)


@dataclass(frozen=True)
class OpCosts:
    synop_pj: float = 23.6
    synop_ns: float = 3.5
    neuron_update_pj: float = 52.0
    neuron_update_ns: float = 8.0
    message_pj: float = 5.0  # within-tile spike plus about one mesh hop
    message_ns: float = 2.0
    static_w_per_chip: float = 1.0
    barrier_ns: float = 500.0


@dataclass
class Estimate:
    per_token: pl.DataFrame  # token, energy_uj (dynamic + static), latency_us, synops, messages, neuron_updates
    generation_tokens_per_s: float
    prefill_tokens_per_s: float
    energy_per_token_mj: float
    latency_per_token_ms: float
    chips: int


def estimate(activity: pl.DataFrame, chips: int, costs: OpCosts | None = None) -> Estimate:
    c = costs or OpCosts()
    core_time = activity.with_columns(
        (
            pl.col("synops") * c.synop_ns + pl.col("neuron_updates") * c.neuron_update_ns + pl.col("messages") * c.message_ns
        ).alias("core_ns")
    )
    stage = core_time.group_by(["token", "layer", "group"]).agg(pl.col("core_ns").max().alias("stage_ns"))
    latency = stage.group_by("token").agg(
        (pl.col("stage_ns").sum() + pl.len() * c.barrier_ns).alias("latency_ns"),
        (pl.col("stage_ns").max() + c.barrier_ns).alias("slowest_stage_ns"),
    )
    totals = activity.group_by("token").agg(pl.col("synops").sum(), pl.col("messages").sum(), pl.col("neuron_updates").sum())
    per_token = (
        totals.join(latency, on="token")
        .with_columns(
            (
                (pl.col("synops") * c.synop_pj + pl.col("neuron_updates") * c.neuron_update_pj + pl.col("messages") * c.message_pj) * 1e-6
                + chips * c.static_w_per_chip * pl.col("latency_ns") * 1e-3
            ).alias("energy_uj"),
            (pl.col("latency_ns") * 1e-3).alias("latency_us"),
        )
        .sort("token")
        .select("token", "energy_uj", "latency_us", "synops", "messages", "neuron_updates", "slowest_stage_ns")
    )
    mean_latency_s = float(per_token["latency_us"].mean()) * 1e-6
    slowest_s = float(per_token["slowest_stage_ns"].mean()) * 1e-9
    return Estimate(
        per_token=per_token.drop("slowest_stage_ns"),
        generation_tokens_per_s=1.0 / mean_latency_s,
        prefill_tokens_per_s=1.0 / slowest_s,
        energy_per_token_mj=float(per_token["energy_uj"].mean()) * 1e-3,
        latency_per_token_ms=mean_latency_s * 1e3,
        chips=chips,
    )
