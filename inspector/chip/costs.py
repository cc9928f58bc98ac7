"""Per-operation costs of a neuro-core and of a multi-chip system, as named presets where every number carries its source.

Intel has not published per-operation energy or time for Loihi 2. What is public, and used here:

- First Loihi, Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
  IEEE Micro 38(1), 2018, Table 2. The table is *pre-silicon* (SDF and SPICE simulation, consistent
  with early silicon): synaptic spike op 23.6 pJ (minimum energy) and 3.5 ns (maximum time); neuron
  update 81 pJ / 8.4 ns active, 52 pJ / 5.3 ns inactive; spike within a tile 1.7 pJ, 2.1 ns; per tile
  hop 3.0 pJ / 4.1 ns east-west, 4.0 pJ / 6.5 ns north-south; mesh-wide barrier 113-465 ns.
- First Loihi, Frady et al. 2020 (Pohoiki Springs): 3.34 W static for 32 chips (about 0.1 W per
  chip); a barrier across chips takes 14.3 us (a 256-chip column) to 16.2 us (768 chips).
- Loihi 2: Intel's technology brief (2021) says "up to 10x faster processing"; press quotes give 2x
  for neuron-state updates and 10x for spike generation. A 16-chip Loihi 2 VPX system measured 16.05 W
  static of 16.2 W total: about 1 W per chip including the board.
- The seed paper's 24-chip measurement of MMfreeLM-370M (`inspector.chip.paper`): the preset "Loihi 2,
  fitted to the paper's 370M measurement" is fitted to it (`inspector.chip.fit`); its fitted numbers
  are below, with the fit's own check in `tests/test_chip_fit.py`.

Time model (see `inspector.chip.estimate`): a time step lasts as long as its busiest core's work or the
synchronization floor, whichever is longer; the floor is `barrier_ns + barrier_per_doubling_ns x
log2(chips)` (a barrier's cost grows with the log of the chips it spans, as Frady's figures do), and
each chip-to-chip crossing on a token's path adds `chip_crossing_ns` in generation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import polars as pl

from inspector.errors import InspectorError

MAX_CHIPS = 1_000_000  # a system larger than this is not a what-if but a typo
MAX_COST = 1e12  # pJ, ns or W: anything above is a typo, not a chip


class CostError(InspectorError):
    pass


@dataclass(frozen=True)
class OpCosts:
    synop_pj: float = 23.6
    synop_ns: float = 3.5
    neuron_update_pj: float = 81.0  # an active neuron (it sends a message this token)
    neuron_update_ns: float = 8.4
    neuron_inactive_pj: float = 52.0  # a neuron that updates and stays silent
    neuron_inactive_ns: float = 5.3
    message_pj: float = 5.2  # within-tile spike 1.7 pJ + one tile hop 3.5 pJ
    message_ns: float = 7.4  # 2.1 ns + 5.3 ns
    static_w_per_chip: float = 0.104
    barrier_ns: float = 465.0
    barrier_per_doubling_ns: float = (14_300 - 465) / 8  # 1,729 ns: Frady 2020, see BARRIER_GROWTH
    chip_crossing_ns: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            label = COST_LABELS[field.name]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise CostError(f"{label} ({field.name}) must be a finite number >= 0, got {value!r}")
            if value > MAX_COST:
                raise CostError(f"{label} ({field.name}) = {value:g} is absurd (over {MAX_COST:g})")

    def sync_floor_ns(self, chips: int) -> float:
        """The shortest time step with `chips` chips synchronizing."""
        check_chips(chips)
        return self.barrier_ns + self.barrier_per_doubling_ns * math.log2(chips)


def check_chips(chips: int, field: str = "chips") -> None:
    if not isinstance(chips, int) or isinstance(chips, bool) or chips < 1:
        raise CostError(f"{field} must be a whole number >= 1, got {chips!r}")
    if chips > MAX_CHIPS:
        raise CostError(f"{field} = {chips:,} is absurd (over {MAX_CHIPS:,} chips)")


COST_LABELS = {
    "synop_pj": "energy per synaptic operation (pJ)",
    "synop_ns": "time per synaptic operation (ns)",
    "neuron_update_pj": "energy per active neuron update (pJ)",
    "neuron_update_ns": "time per active neuron update (ns)",
    "neuron_inactive_pj": "energy per inactive neuron update (pJ)",
    "neuron_inactive_ns": "time per inactive neuron update (ns)",
    "message_pj": "energy per message (pJ)",
    "message_ns": "time per message (ns)",
    "static_w_per_chip": "static power per chip (W)",
    "barrier_ns": "synchronization floor in one chip (ns)",
    "barrier_per_doubling_ns": "floor growth per doubling of chips (ns)",
    "chip_crossing_ns": "chip-to-chip crossing latency (ns)",
}

DAVIES_2018 = "Davies et al., IEEE Micro 38(1) 2018, Table 2 (first Loihi, pre-silicon)"
FRADY_2020 = "Frady et al. 2020, Pohoiki Springs (first Loihi, measured)"
INTEL_BRIEF = "Intel Loihi 2 technology brief (2021): 'up to 10x faster processing'"
INTEL_PRESS = "Intel press quotes (2021)"
VPX_16 = "16-chip Loihi 2 VPX system, measured: 16.05 W static of 16.2 W total, ~1 W per chip with the board"
BARRIER_GROWTH = (
    FRADY_2020 + ": 14.3 us across a 256-chip column, from 465 ns in one chip: (14,300 - 465) / log2(256); "
    "log growth assumed (it predicts 17.0 us at 768 chips, 16.2 us measured)"
)
NO_CROSSING = "assumption: no public figure; 0 means a crossing costs nothing beyond the synchronization floor"


@dataclass(frozen=True)
class CostPreset:
    name: str
    costs: OpCosts
    sources: dict[str, str]  # field -> where the number comes from ("assumption: ...", "fitted to ...")
    compare: dict[str, str] = dataclasses.field(default_factory=dict)  # field -> the public figure it can be compared with

    def table(self) -> pl.DataFrame:
        """Every number with its source (and, for fitted ones, the public figure beside it)."""
        names = [f.name for f in dataclasses.fields(OpCosts)]
        return pl.DataFrame(
            {
                "quantity": [COST_LABELS[n] for n in names],
                "value": [float(getattr(self.costs, n)) for n in names],
                "public figure to compare": [self.compare.get(n, "") for n in names],
                "source": [self.sources[n] for n in names],
            }
        )


def _loihi_2018() -> CostPreset:
    return CostPreset(
        "Loihi (2018 figures)",
        OpCosts(),
        {
            "synop_pj": DAVIES_2018 + ": 23.6 pJ per synaptic spike op (minimum energy)",
            "synop_ns": DAVIES_2018 + ": 3.5 ns per synaptic spike op (maximum time)",
            "neuron_update_pj": DAVIES_2018 + ": 81 pJ per active neuron update",
            "neuron_update_ns": DAVIES_2018 + ": 8.4 ns per active neuron update",
            "neuron_inactive_pj": DAVIES_2018 + ": 52 pJ per inactive neuron update",
            "neuron_inactive_ns": DAVIES_2018 + ": 5.3 ns per inactive neuron update",
            "message_pj": DAVIES_2018 + ": 1.7 pJ within-tile spike + 3.5 pJ for one tile hop (mean of 3.0 E-W / 4.0 N-S; "
            "one hop assumed)",
            "message_ns": DAVIES_2018 + ": 2.1 ns within-tile spike + 5.3 ns for one tile hop (mean of 4.1 / 6.5 ns; one hop "
            "assumed)",
            "static_w_per_chip": FRADY_2020 + ": 3.34 W static for 32 chips",
            "barrier_ns": DAVIES_2018 + ": mesh-wide barrier 113-465 ns (the whole chip: 465 ns)",
            "barrier_per_doubling_ns": BARRIER_GROWTH,
            "chip_crossing_ns": NO_CROSSING,
        },
    )


LOIHI2_SPEEDUP = {"synop_ns": 10.0, "message_ns": 10.0, "neuron_update_ns": 2.0, "neuron_inactive_ns": 2.0}


def _loihi_2() -> CostPreset:
    base = OpCosts()
    costs = dataclasses.replace(
        base, static_w_per_chip=1.0, **{name: getattr(base, name) / factor for name, factor in LOIHI2_SPEEDUP.items()},
    )
    same = "assumption: no Loihi 2 energy per operation is published; first Loihi's kept (" + DAVIES_2018 + ")"
    kept = "no Loihi 2 statement; first Loihi's kept: "
    return CostPreset(
        "Loihi 2 (Intel's statements)",
        costs,
        {
            "synop_pj": same,
            "synop_ns": "first Loihi's 3.5 ns / 10: " + INTEL_BRIEF + " (best case, applied to synaptic processing)",
            "neuron_update_pj": same,
            "neuron_update_ns": "first Loihi's 8.4 ns / 2: " + INTEL_PRESS + ", 2x faster neuron-state updates",
            "neuron_inactive_pj": same,
            "neuron_inactive_ns": "first Loihi's 5.3 ns / 2: " + INTEL_PRESS + ", 2x faster neuron-state updates",
            "message_pj": same,
            "message_ns": "first Loihi's 7.4 ns / 10: " + INTEL_PRESS + ", 10x faster spike generation",
            "static_w_per_chip": VPX_16,
            "barrier_ns": kept + DAVIES_2018,
            "barrier_per_doubling_ns": kept + BARRIER_GROWTH,
            "chip_crossing_ns": NO_CROSSING,
        },
    )


# -- the preset fitted to the paper's 24-chip measurement ----------------------------------------
# `inspector.chip.fit.fit_paper()` computes these from the pinned 370M activity table
# (inspector/data/activity_370m_one_block_per_chip.parquet); tests/test_chip_fit.py checks that the
# fit still lands on them, so they are the fit's output written down, not chosen.
FITTED_NAME = "Loihi 2, fitted to the paper's 370M measurement"
FITTED_SOURCE = "fitted to the paper's 24-chip 370M measurement"
FITTED = {  # the four free constants of the fit, as `fit_paper()` returns them (5 significant digits)
    "sync_scale": 10.726,  # x the Loihi 2 (Intel's statements) synchronization floor (barrier and its growth)
    "time_scale": 3.2452,  # x the Loihi 2 (Intel's statements) per-operation times
    "static_w_per_chip": 0.69863,
    "energy_scale": 0.24185,  # x every per-operation energy (first Loihi's figures)
}


def fitted_costs(sync_scale: float, time_scale: float, static_w_per_chip: float, energy_scale: float) -> OpCosts:
    """The Loihi 2 (Intel's statements) costs with the fit's four constants applied."""
    base = _loihi_2().costs
    return dataclasses.replace(
        base,
        synop_ns=base.synop_ns * time_scale,
        neuron_update_ns=base.neuron_update_ns * time_scale,
        neuron_inactive_ns=base.neuron_inactive_ns * time_scale,
        message_ns=base.message_ns * time_scale,
        barrier_ns=base.barrier_ns * sync_scale,
        barrier_per_doubling_ns=base.barrier_per_doubling_ns * sync_scale,
        static_w_per_chip=static_w_per_chip,
        synop_pj=base.synop_pj * energy_scale,
        neuron_update_pj=base.neuron_update_pj * energy_scale,
        neuron_inactive_pj=base.neuron_inactive_pj * energy_scale,
        message_pj=base.message_pj * energy_scale,
    )


def _fitted() -> CostPreset:
    f = FITTED
    costs = fitted_costs(f["sync_scale"], f["time_scale"], f["static_w_per_chip"], f["energy_scale"])
    t, s, e = f"{f['time_scale']:.3g}", f"{f['sync_scale']:.3g}", f"{f['energy_scale']:.3g}"
    times = f"{FITTED_SOURCE}: {t} x the Loihi 2 (Intel's statements) time"
    energies = f"{FITTED_SOURCE}: {e} x first Loihi's energy (one scale on every per-operation energy)"
    floor = f"{FITTED_SOURCE}: {s} x the first-Loihi barrier"
    floor_24 = costs.sync_floor_ns(24) / 1e3
    return CostPreset(
        FITTED_NAME,
        costs,
        {
            "synop_pj": energies,
            "synop_ns": times,
            "neuron_update_pj": energies,
            "neuron_update_ns": times,
            "neuron_inactive_pj": energies,
            "neuron_inactive_ns": times,
            "message_pj": energies,
            "message_ns": times,
            "static_w_per_chip": FITTED_SOURCE,
            "barrier_ns": floor,
            "barrier_per_doubling_ns": floor + f" (floor at 24 chips: {floor_24:,.1f} us)",
            "chip_crossing_ns": NO_CROSSING,
        },
        {
            "synop_pj": "first Loihi: 23.6 pJ (Davies et al. 2018, Table 2)",
            "synop_ns": "first Loihi: 3.5 ns maximum; Intel's 'up to 10x': 0.35 ns",
            "neuron_update_ns": "first Loihi: 8.4 ns; Intel's 2x: 4.2 ns",
            "static_w_per_chip": "~1 W per chip measured on a 16-chip Loihi 2 system (board included)",
            "barrier_per_doubling_ns": "first Loihi across chips: 14.3-16.2 us for 256-768 chips (Frady et al. 2020); "
            f"{OpCosts().sync_floor_ns(24) / 1e3:.1f} us at 24 chips by the same curve",
        },
    )


PRESETS: dict[str, CostPreset] = {p.name: p for p in (_fitted(), _loihi_2(), _loihi_2018())}
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
    return CostPreset(CUSTOM, costs, sources, base.compare)
