"""A/B comparison: two QuantConfigs (or two saved runs' configs) on the same text, side by side.

Both integer models are teacher-forced on the same tokens (the sequence path) and compared with the
same float model, so every difference is the configs' doing: per-site SQNR, mean next-token KL and
top-1 agreement, the share of clipped values per site, and the activity (messages, synaptic
operations) and estimated energy per token that decide the chip's cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from inspector.backends.emulator import Emulator
from inspector.chip.estimate import estimate
from inspector.compare.diff import DiffResult, compare
from inspector.lm.checkpoint import LoadedModel
from inspector.quant.config import QuantConfig


@dataclass
class ABResult:
    qc_a: QuantConfig
    qc_b: QuantConfig
    summary: pl.DataFrame  # metric, a, b, b_minus_a
    sites: pl.DataFrame  # layer, site, sqnr_a, sqnr_b, sqnr_delta_db, clipped_a, clipped_b
    tokens: pl.DataFrame  # token, kl_a, kl_b, agree_a, agree_b
    activity: pl.DataFrame  # layer, group, messages_a, messages_b, synops_a, synops_b (mean per token)

    def changed_fields(self) -> dict[str, tuple]:
        a, b = self.qc_a.to_dict(), self.qc_b.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b.get(k)}


def _side(diff: DiffResult, emulator: Emulator, tag: str) -> tuple[dict, pl.DataFrame, pl.DataFrame]:
    probe = diff.int_probe
    saturation = probe.saturation()
    clipped = saturation.group_by(["layer", "site"], maintain_order=True).agg(
        (pl.col("clipped").sum() / pl.col("values").sum()).alias(f"clipped_{tag}")
    )
    sites = diff.per_layer().select("layer", "site", pl.col("sqnr_db").alias(f"sqnr_{tag}")).join(
        clipped, on=["layer", "site"], how="left"
    )
    activity = probe.activity()
    per_group = activity.group_by(["layer", "group"], maintain_order=True).agg(
        (pl.col("messages").sum() / diff.tokens.height).alias(f"messages_{tag}"),
        (pl.col("synops").sum() / diff.tokens.height).alias(f"synops_{tag}"),
    )
    cost = estimate(activity, emulator.core_map.chips)
    summary = {
        "mean KL (nats)": float(diff.tokens["kl"].mean()),
        "top-1 agreement": float(diff.tokens["agree"].mean()),
        "perplexity, integer": diff.perplexity_int,
        "clipped values (share)": float(saturation["clipped"].sum() / max(saturation["values"].sum(), 1)),
        "messages per token": float(activity["messages"].sum() / diff.tokens.height),
        "synaptic ops per token": float(activity["synops"].sum() / diff.tokens.height),
        "energy per token (uJ)": cost.energy_per_token_mj * 1e3,
    }
    return summary, sites, per_group


def ab_compare(loaded: LoadedModel, ids: list[int], qc_a: QuantConfig, qc_b: QuantConfig) -> ABResult:
    emulators = [Emulator(loaded, qc) for qc in (qc_a, qc_b)]
    # Everything compared here is per token or per site, summarized for every token as it is recorded:
    # per-neuron values are kept for the last token only, so a 4,000-token text costs no more memory.
    diffs = [compare(em, list(ids), keep_from=len(ids) - 1) for em in emulators]
    (sum_a, sites_a, act_a), (sum_b, sites_b, act_b) = (
        _side(diff, em, tag) for diff, em, tag in zip(diffs, emulators, "ab", strict=True)
    )
    summary = pl.DataFrame(
        {"metric": list(sum_a), "a": list(sum_a.values()), "b": [sum_b[k] for k in sum_a]}
    ).with_columns((pl.col("b") - pl.col("a")).alias("b_minus_a"))
    sites = sites_a.join(sites_b, on=["layer", "site"], how="full", coalesce=True).with_columns(
        (pl.col("sqnr_b") - pl.col("sqnr_a")).alias("sqnr_delta_db")
    ).select("layer", "site", "sqnr_a", "sqnr_b", "sqnr_delta_db", "clipped_a", "clipped_b")
    tokens = pl.DataFrame(
        {
            "token": diffs[0].tokens["token"],
            "kl_a": diffs[0].tokens["kl"],
            "kl_b": diffs[1].tokens["kl"],
            "agree_a": diffs[0].tokens["agree"],
            "agree_b": diffs[1].tokens["agree"],
        }
    )
    activity = act_a.join(act_b, on=["layer", "group"], how="full", coalesce=True)
    return ABResult(qc_a, qc_b, summary, sites, tokens, activity)
