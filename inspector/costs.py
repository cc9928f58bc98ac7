"""Per-operation costs of a neuro-core, as named presets where every number carries its source.

Intel has not published per-operation energy or time for Loihi 2. What is public:

- First Loihi, measured: Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip
  Learning", IEEE Micro 38(1), 2018, Table 2 (the chip at its nominal supply): about 23.6 pJ per
  synaptic spike operation and a minimum synaptic operation time of 3.5 ns, about 52 pJ per active
  neuron update, about 1.7 pJ and about 2 ns per spike within a tile, plus 3.5-4 pJ per mesh hop.
  The 8 ns per neuron update is how this project first quoted the same table; it was not
  re-checked against the paper offline, so the source column says so.
- Loihi 2 vs Loihi: Intel's launch announcement (press release "Intel Advances Neuromorphic with
  Loihi 2, New Lava Software Framework and New Partners", 30 September 2021) states "up to 10 times
  faster processing, up to 15 times greater resource density with up to 1 million neurons per chip,
  and improved energy efficiency"; the technology brief "Taking Neuromorphic Computing to the Next
  Level with Loihi 2" (2021) says the chip "outperforms its predecessor by up to 10x". No energy
  factor is given, so the "Loihi 2" preset divides every time by 10 (the best case Intel states) and
  keeps the first Loihi's energies (an assumption: "improved" means at or below them).
- Static power here means the power a chip draws while idle (leakage and clocks), paid for every
  chip the core map uses during the whole time a token takes. Intel publishes no idle power for
  either chip. About 1 W is the usual *total* power quoted for a Loihi 2 chip, so the default of
  1 W per chip is an upper bound on idle power, not a measurement: with it static energy dominates
  every estimate, which the Hardware page shows in its breakdown. Set your own value under "custom".
- `barrier_ns`, the end-of-time-step synchronization, is an assumption (no public figure).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import polars as pl

from inspector.errors import InspectorError


class CostError(InspectorError):
    pass


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

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or value != value:
                raise CostError(f"OpCosts.{field.name} must be a number >= 0, got {value!r}")


COST_LABELS = {
    "synop_pj": "energy per synaptic operation (pJ)",
    "synop_ns": "time per synaptic operation (ns)",
    "neuron_update_pj": "energy per neuron update (pJ)",
    "neuron_update_ns": "time per neuron update (ns)",
    "message_pj": "energy per message (pJ)",
    "message_ns": "time per message (ns)",
    "static_w_per_chip": "static (idle) power per chip (W)",
    "barrier_ns": "time-step barrier (ns)",
}

DAVIES_2018 = "Davies et al., IEEE Micro 38(1) 2018, Table 2 (first Loihi, measured)"
INTEL_10X = "Intel press release 30 Sep 2021 / Loihi 2 technology brief: 'up to 10 times faster processing'"
IDLE_ASSUMPTION = (
    "assumption: no idle power published; ~1 W is the typical total power quoted per Loihi 2 chip, "
    "so this is an upper bound on idle power"
)


@dataclass(frozen=True)
class CostPreset:
    name: str
    costs: OpCosts
    sources: dict[str, str]  # field -> where the number comes from (or "assumption: ...")

    def table(self) -> pl.DataFrame:
        """Every number with its source, for display."""
        return pl.DataFrame(
            {
                "quantity": [COST_LABELS[f.name] for f in dataclasses.fields(OpCosts)],
                "value": [float(getattr(self.costs, f.name)) for f in dataclasses.fields(OpCosts)],
                "source": [self.sources[f.name] for f in dataclasses.fields(OpCosts)],
            }
        )


def _loihi_2018() -> CostPreset:
    return CostPreset(
        "Loihi (2018 measurements)",
        OpCosts(),
        {
            "synop_pj": DAVIES_2018 + ": 23.6 pJ per synaptic spike op",
            "synop_ns": DAVIES_2018 + ": 3.5 ns minimum synaptic op time",
            "neuron_update_pj": DAVIES_2018 + ": 52 pJ per active neuron update",
            "neuron_update_ns": DAVIES_2018 + ": ~8 ns per neuron update (as first quoted here; not re-checked offline)",
            "message_pj": DAVIES_2018 + ": 1.7 pJ within-tile spike + 3.5 pJ per mesh hop (one hop assumed)",
            "message_ns": DAVIES_2018 + ": ~2 ns within-tile spike latency",
            "static_w_per_chip": IDLE_ASSUMPTION,
            "barrier_ns": "assumption: no public figure for the time-step barrier",
        },
    )


def _loihi_2() -> CostPreset:
    base = OpCosts()
    speedup = 10.0
    costs = dataclasses.replace(
        base,
        synop_ns=base.synop_ns / speedup,
        neuron_update_ns=base.neuron_update_ns / speedup,
        message_ns=base.message_ns / speedup,
        barrier_ns=base.barrier_ns / speedup,
    )
    same_energy = "assumption: Intel states 'improved energy efficiency' without a figure; first Loihi's value kept ("
    return CostPreset(
        "Loihi 2 (Intel's public statements)",
        costs,
        {
            "synop_pj": same_energy + DAVIES_2018 + ")",
            "synop_ns": "first Loihi's 3.5 ns / 10, " + INTEL_10X + " (best case)",
            "neuron_update_pj": same_energy + DAVIES_2018 + ")",
            "neuron_update_ns": "first Loihi's 8 ns / 10, " + INTEL_10X + " (best case)",
            "message_pj": same_energy + DAVIES_2018 + ")",
            "message_ns": "first Loihi's 2 ns / 10, " + INTEL_10X + " (best case)",
            "static_w_per_chip": IDLE_ASSUMPTION,
            "barrier_ns": "assumption: first Loihi preset's assumed 500 ns / 10, by the same statement",
        },
    )


PRESETS: dict[str, CostPreset] = {p.name: p for p in (_loihi_2018(), _loihi_2())}
CUSTOM = "custom"


def preset(name: str) -> CostPreset:
    if name not in PRESETS:
        raise CostError(f"no cost preset {name!r}; choose one of {', '.join(PRESETS)} (or edit a custom one)")
    return PRESETS[name]


def custom_preset(costs: OpCosts, based_on: str) -> CostPreset:
    """Costs the user edited: a changed number's source says so; unchanged ones keep their source."""
    base = preset(based_on)
    sources = {
        f.name: base.sources[f.name] if getattr(costs, f.name) == getattr(base.costs, f.name) else "set by you"
        for f in dataclasses.fields(OpCosts)
    }
    return CostPreset(CUSTOM, costs, sources)
