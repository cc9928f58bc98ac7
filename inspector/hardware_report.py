"""What the Hardware page shows, as plain functions: re-map a model's neuron groups under what-if
per-core limits, sum its per-neuron activity onto the new cores, and estimate time and energy.

Per-neuron activity does not depend on the core map (see `inspector.emulator.activity`), so a
what-if (other limits, packed synapses, shared cores) costs a re-map and a re-sum, never a re-run.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from inspector.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.costs import OpCosts
from inspector.emulator.activity import GroupActivity, core_activity
from inspector.emulator.hardware import HardwareConfig
from inspector.emulator.mapper import CoreMap, NeuronGroup, map_groups, model_groups
from inspector.estimate import Estimate, estimate


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
            "cores": int(summary["cores"]),
            "chips": int(summary["chips"]),
            "synapses": int(summary["synapses"]),
            "generation tokens/s": e.generation.tokens_per_s,
            "generation mJ/token": e.generation.energy_per_token_mj,
            "static share (generation)": e.generation.static_mj / e.generation.energy_per_token_mj,
            "prefill tokens/s": e.prefill.tokens_per_s,
            "prefill mJ/token": e.prefill.energy_per_token_mj,
            f"time to first token, {e.prompt_tokens} tokens (s)": e.time_to_first_token_s,
        }


def evaluate(
    model: str, weights: str, groups: list[NeuronGroup], activity: GroupActivity, hw: HardwareConfig,
    share_cores: bool, costs: OpCosts, prompt_tokens: int,
) -> Evaluation:
    """Map the groups under `hw`, sum the activity onto those cores, and estimate."""
    core_map = map_groups(groups, hw, share_cores)
    table = core_activity(activity, core_map)
    tokens = int(table["token"].n_unique())
    return Evaluation(model, weights, tokens, core_map, estimate(table, core_map.chips, costs, prompt_tokens))


def matching_published(config: HGRNBitConfig) -> str | None:
    """The published size a loaded model has the configuration of (its activity is then the real one)."""
    def shape(c: HGRNBitConfig) -> tuple:
        return (c.hidden_size, c.num_hidden_layers, c.mixer_size, c.mlp_intermediate_size, c.vocab_size)

    for name, overrides in PUBLISHED_CONFIGS.items():
        if shape(HGRNBitConfig(**overrides)) == shape(config):
            return name
    return None


def density_summary(name: str, hw: HardwareConfig, share_cores: bool) -> dict:
    """A published size's core map without measured activity: synapse counts from the typical ternary density."""
    config = HGRNBitConfig(**PUBLISHED_CONFIGS[name])
    return {"model": name} | map_groups(model_groups(config), hw, share_cores).summary()


def results_table(evaluations: list[Evaluation]) -> pl.DataFrame:
    return pl.DataFrame([e.row() for e in evaluations])
