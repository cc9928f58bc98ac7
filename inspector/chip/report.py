"""What the Hardware page shows, as plain functions: re-map a model's neuron groups under what-if
per-core limits, sum its per-neuron activity onto the new cores, and estimate time and energy.

Per-neuron activity does not depend on the core map (see `inspector.chip.activity`), so a
what-if (other limits, packed synapses, shared cores, the chip layout, the LM head on chip) costs a
re-map and a re-sum, never a re-run.

`energy_split` is the one-call answer to "where does the energy of a token go" (static vs dynamic,
per phase) for a model's activity under a named preset.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from inspector import schema as S
from inspector.chip.activity import GroupActivity, core_activity
from inspector.chip.costs import FITTED_NAME, OpCosts, preset
from inspector.chip.estimate import DEFAULT_PROMPT_TOKENS, Estimate, estimate
from inspector.chip.limits import HardwareConfig
from inspector.chip.mapper import (
    LM_HEAD,
    ONE_BLOCK_PER_CHIP,
    PACKED,
    CoreMap,
    NeuronGroup,
    lm_head_group,
    map_groups,
    model_groups,
)
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig


@dataclass
class Evaluation:
    model: str
    weights: str  # which weights (and which tokens) produced the activity
    tokens: int
    core_map: CoreMap
    estimate: Estimate

    def row(self) -> dict:
        e, summary = self.estimate, self.core_map.summary()
        return {
            "model": self.model,
            "activity from": self.weights,
            "tokens measured": self.tokens,
            "layout": self.core_map.layout,
            "LM head": "chip" if any(g.name == LM_HEAD for g in self.core_map.groups) else "host",
            "cores": int(summary["cores"]),
            "chips": int(summary["chips"]),
            "steps per token": e.steps_per_token,
            "chip crossings": e.crossings,
            "synapses": int(summary["synapses"]),
            "generation tokens/s": e.generation.tokens_per_s,
            "generation mJ/token": e.generation.energy_per_token_mj,
            "static share (generation)": e.generation.static_mj / e.generation.energy_per_token_mj,
            "prefill tokens/s": e.prefill.tokens_per_s,
            "prefill mJ/token": e.prefill.energy_per_token_mj,
            f"time to first token {e.prompt_tokens} tokens (s)": e.time_to_first_token_s,
        }


def lm_head_activity(final_norm_messages: np.ndarray, head: NeuronGroup) -> tuple[np.ndarray, np.ndarray]:
    """The LM head's activity on chip, from the final norm's messages: every head neuron receives one
    synaptic op per message of a final-norm neuron it has a synapse from (its share of stored synapses
    of the hidden width, the typical ternary density), and sends its logit to the host (one message)."""
    active = (np.asarray(final_norm_messages) > 0).sum(axis=1, dtype=np.int64)  # (tokens,)
    share = head.synapses.astype(np.float64) / max(head.fan_in, 1)  # (vocab,)
    synops = np.rint(active[:, None] * share[None, :]).astype(np.int64)
    return np.ones_like(synops), synops


def with_lm_head(
    groups: list[NeuronGroup], activity: GroupActivity, head: NeuronGroup,
) -> tuple[list[NeuronGroup], GroupActivity]:
    """The groups and activity with the LM head mapped as a neuron group after the final norm."""
    messages = activity[(-1, S.FINAL_NORM_GROUP)][0]
    return [*groups, head], {**activity, (-1, LM_HEAD): lm_head_activity(messages, head)}


def evaluate(
    model: str, weights: str, groups: list[NeuronGroup], activity: GroupActivity, hw: HardwareConfig,
    share_cores: bool, costs: OpCosts, prompt_tokens: int, layout: str = PACKED, lm_head: NeuronGroup | None = None,
) -> Evaluation:
    """Map the groups under `hw` and the layout (with the LM head when given), sum the activity onto
    those cores, and estimate."""
    if lm_head is not None:
        groups, activity = with_lm_head(groups, activity, lm_head)
    core_map = map_groups(groups, hw, share_cores, layout)
    table = core_activity(activity, core_map)
    tokens = int(table["token"].n_unique())
    return Evaluation(model, weights, tokens, core_map, estimate(table, core_map.chips, costs, prompt_tokens))


@dataclass(frozen=True)
class EnergySplit:
    """Energy per token of one phase, static (idle power x time) vs dynamic (the counted operations)."""

    phase: str
    static_mj: float
    dynamic_mj: float
    tokens_per_s: float
    chips: int

    @property
    def total_mj(self) -> float:
        return self.static_mj + self.dynamic_mj


def energy_split(
    groups: list[NeuronGroup], activity: GroupActivity, preset_name: str = FITTED_NAME, layout: str = ONE_BLOCK_PER_CHIP,
    hw: HardwareConfig | None = None,
) -> dict[str, EnergySplit]:
    """Where a token's energy goes under a named cost preset: {"generation": ..., "prefill": ...}.

    `groups`, `activity`: a model's neuron groups and per-neuron activity (for the loaded model
    `emulator.core_map.groups` and `analysis.run.probe.group_activity()`; for a published size a
    `MeasuredActivity`'s `groups` and `activity`). Default: the preset fitted to the paper, one block per chip.
    """
    result = evaluate("model", "", groups, activity, hw or HardwareConfig(), False, preset(preset_name).costs,
                      DEFAULT_PROMPT_TOKENS, layout)
    e = result.estimate
    return {
        name: EnergySplit(name, phase.static_mj, phase.dynamic_mj, phase.tokens_per_s, e.chips)
        for name, phase in (("generation", e.generation), ("prefill", e.prefill))
    }


def matching_published(config: HGRNBitConfig) -> str | None:
    """The published size a loaded model has the configuration of (its activity is then the real one)."""
    def shape(c: HGRNBitConfig) -> tuple:
        return (c.hidden_size, c.num_hidden_layers, c.mixer_size, c.mlp_intermediate_size, c.vocab_size)

    for name, overrides in PUBLISHED_CONFIGS.items():
        if shape(HGRNBitConfig(**overrides)) == shape(config):
            return name
    return None


def density_summary(
    name: str, hw: HardwareConfig, share_cores: bool, layout: str = PACKED, lm_head_on_chip: bool = False,
) -> dict:
    """A published size's core map without measured activity: synapse counts from the typical ternary density."""
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    groups = model_groups(config) + ([lm_head_group(config)] if lm_head_on_chip else [])
    return {"model": name} | map_groups(groups, hw, share_cores, layout).summary()


def results_table(evaluations: list[Evaluation]) -> pl.DataFrame:
    return pl.DataFrame([e.row() for e in evaluations])


def export_name(column: str) -> str:
    """A display column name as an export column name (no spaces, units kept): "generation tokens/s" ->
    "generation_tokens_per_s", "time to first token 500 tokens (s)" -> "time_to_first_token_500_tokens_s"."""
    text = column.lower().replace("/", "_per_").replace("%", "pct")
    return re.sub(r"[^0-9a-z]+", "_", text).strip("_")


def export_names(table: pl.DataFrame) -> pl.DataFrame:
    """The table with export column names (the page's downloads refuse names with spaces)."""
    return table.rename({c: export_name(c) for c in table.columns})


def readable_seconds(seconds: float) -> str:
    """A duration for a metric: "99.3 ms", "9.47 s", "2.6 min", never an exponent."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.3g} ms"
    if seconds < 120:
        return f"{seconds:,.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:,.3g} min"
    return f"{seconds / 3600:,.1f} h"


def what_if_rows(
    name: str, measured_weights: str, groups: list[NeuronGroup], activity: GroupActivity, config: HGRNBitConfig,
    costs: OpCosts, prompt_tokens: int = DEFAULT_PROMPT_TOKENS,
) -> list[tuple[str, Evaluation]]:
    """One model under the paper's layout and the given costs, then one change at a time: the chips
    used (packed layout, packed with 2-bit synapses), static power (halved; first Loihi's 0.1 W per
    chip), the LM head on chip."""
    hw = HardwareConfig()

    def run(costs_: OpCosts, layout: str = ONE_BLOCK_PER_CHIP, hw_: HardwareConfig = hw, head: bool = False) -> Evaluation:
        return evaluate(name, measured_weights, groups, activity, hw_, False, costs_, prompt_tokens, layout,
                        lm_head_group(config) if head else None)

    return [
        ("the paper's layout: one block per chip, LM head on the host", run(costs)),
        ("fewer chips: packed layout", run(costs, PACKED)),
        ("fewer chips: packed, 2-bit synapses", run(costs, PACKED, HardwareConfig(bits_per_synapse=2))),
        ("static power halved", run(dataclasses.replace(costs, static_w_per_chip=costs.static_w_per_chip / 2))),
        ("static power 0.1 W per chip (first Loihi, measured)", run(dataclasses.replace(costs, static_w_per_chip=0.104))),
        ("LM head on chip", run(costs, head=True)),
    ]


def what_if_table(rows: list[tuple[str, Evaluation]]) -> pl.DataFrame:
    """Each what-if's figures and how much each moves against the first row (percent)."""
    reference = rows[0][1].estimate

    def change(value: float, ref: float) -> float:
        return 100 * (value / ref - 1)

    out = []
    for label, evaluation in rows:
        e = evaluation.estimate
        out.append({
            "what if": label,
            "chips": e.chips,
            "generation tokens/s": e.generation.tokens_per_s,
            "change tokens/s (%)": change(e.generation.tokens_per_s, reference.generation.tokens_per_s),
            "generation mJ/token": e.generation.energy_per_token_mj,
            "change mJ/token (%)": change(e.generation.energy_per_token_mj, reference.generation.energy_per_token_mj),
            "prefill tokens/s": e.prefill.tokens_per_s,
            "prefill mJ/token": e.prefill.energy_per_token_mj,
            "time to first token (s)": e.time_to_first_token_s,
            "model": evaluation.model,
            "activity from": evaluation.weights,
        })
    return pl.DataFrame(out)
