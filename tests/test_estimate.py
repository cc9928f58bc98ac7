"""The time and energy model on small hand-computed activity tables, the cost presets and the paper ratios."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from inspector.costs import CUSTOM, PRESETS, CostError, OpCosts, custom_preset, preset
from inspector.estimate import estimate
from inspector.paper import PAPER_CLAIMS, BaselineError, GpuBaseline, ratios

# round numbers so that every figure below can be checked by hand
COSTS = OpCosts(
    synop_pj=1, synop_ns=1, neuron_update_pj=2, neuron_update_ns=10, message_pj=4, message_ns=100, static_w_per_chip=0.5,
    barrier_ns=1000,
)
CHIPS = 2


def activity() -> pl.DataFrame:
    """Two tokens, one layer of two groups: A on cores 0-1, B on core 2."""
    rows = [
        # token, core, group, synops, neuron_updates, messages
        (0, 0, "A", 100, 5, 1),  # 100*1 + 5*10 + 1*100 = 250 ns
        (0, 1, "A", 300, 5, 0),  # 350 ns -> stage A = 350 + 1000 = 1350
        (0, 2, "B", 0, 20, 3),  # 500 ns -> stage B = 1500
        (1, 0, "A", 0, 5, 0),  # 50 ns
        (1, 1, "A", 100, 5, 2),  # 350 ns -> stage A = 1350
        (1, 2, "B", 0, 20, 1),  # 300 ns -> stage B = 1300
    ]
    return pl.DataFrame(
        {
            "token": [r[0] for r in rows], "core": [r[1] for r in rows], "chip": [0] * 6, "layer": [0] * 6,
            "group": [r[2] for r in rows], "messages": [r[5] for r in rows], "active_neurons": [min(r[5], 1) for r in rows],
            "synops": [r[3] for r in rows], "neuron_updates": [r[4] for r in rows],
            # a group's size, deliberately not its updates: the estimate must charge neuron updates
            "neurons": [7 * r[4] + 3 for r in rows],
        }
    )


def test_timing_by_hand():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    # generation: latency = sum of stages: token 0 = 1350 + 1500 = 2850 ns, token 1 = 1350 + 1300 = 2650 ns
    assert est.per_token["latency_us"].to_list() == pytest.approx([2.85, 2.65])
    assert est.generation.seconds_per_token == pytest.approx(2750e-9)
    assert est.generation.tokens_per_s == pytest.approx(1 / 2750e-9)
    # prefill: one token per slowest stage: 1500 and 1350 ns
    assert est.prefill.seconds_per_token == pytest.approx(1425e-9)
    # time to first token of a 3-token prompt: one full latency + 2 pipeline intervals
    assert est.time_to_first_token_s == pytest.approx(2750e-9 + 2 * 1425e-9)
    assert est.latency_per_token_ms == pytest.approx(2750e-6)


def test_energy_by_hand():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    # dynamic, mean over the two tokens: synops (400 + 100) / 2 * 1 pJ, updates 30 * 2 pJ, messages (4 + 3) / 2 * 4 pJ
    for phase in (est.generation, est.prefill):
        assert phase.synops_mj == pytest.approx(250e-9)
        assert phase.neuron_mj == pytest.approx(60e-9)
        assert phase.message_mj == pytest.approx(14e-9)
    # static: 2 chips * 0.5 W * the time a token occupies them
    assert est.generation.static_mj == pytest.approx(1.0 * 2750e-9 * 1e3)
    assert est.prefill.static_mj == pytest.approx(1.0 * 1425e-9 * 1e3)
    assert est.energy_per_token_mj == pytest.approx(2750e-6 + 324e-9)
    # per token (generation): token 0 = 476 pJ dynamic + 1 W * 2850 ns
    assert est.per_token["energy_uj"].to_list() == pytest.approx([476e-6 + 2.85, 172e-6 + 2.65])


def test_breakdown_per_group_and_layer_adds_up():
    est = estimate(activity(), CHIPS, COSTS)
    g = {row["group"]: row for row in est.per_group.iter_rows(named=True)}
    assert g["A"]["stage_ns"] == pytest.approx(1350) and g["B"]["stage_ns"] == pytest.approx(1400)
    assert g["A"]["static_uj"] == pytest.approx(1.35) and g["B"]["static_uj"] == pytest.approx(1.4)
    assert g["A"]["synops_uj"] == pytest.approx(250e-6) and g["B"]["synops_uj"] == 0
    assert g["B"]["message_uj"] == pytest.approx(2 * 4e-6)
    layer = est.per_layer().row(0, named=True)
    assert layer["static_uj"] * 1e-3 == pytest.approx(est.generation.static_mj)
    dynamic = layer["synops_uj"] + layer["neuron_uj"] + layer["message_uj"]
    assert dynamic * 1e-3 == pytest.approx(est.generation.dynamic_mj)
    summary = est.summary()
    assert summary.filter(pl.col("figure") == "tokens/s")["value"].to_list() == pytest.approx([1 / 1425e-9, 1 / 2750e-9])


def test_costs_scale_energy_and_time_separately():
    base = estimate(activity(), CHIPS, COSTS)
    slow = estimate(
        activity(), CHIPS, dataclasses.replace(COSTS, synop_ns=2, neuron_update_ns=20, message_ns=200, barrier_ns=2000),
    )
    assert slow.generation.seconds_per_token == pytest.approx(2 * base.generation.seconds_per_token)
    assert slow.generation.dynamic_mj == pytest.approx(base.generation.dynamic_mj)
    assert slow.generation.static_mj == pytest.approx(2 * base.generation.static_mj)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="no activity"):
        estimate(activity().clear(), CHIPS, COSTS)
    with pytest.raises(ValueError, match="at least one token"):
        estimate(activity(), CHIPS, COSTS, prompt_tokens=0)
    with pytest.raises(CostError, match="synop_pj"):
        OpCosts(synop_pj=-1.0)
    with pytest.raises(CostError, match="no cost preset"):
        preset("Loihi 3")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_loads_with_a_source_for_every_number(name):
    p = preset(name)
    table = p.table()
    assert table.height == len(dataclasses.fields(OpCosts))
    assert all(source.strip() for source in table["source"].to_list())
    assert table["value"].to_list() == [float(getattr(p.costs, f.name)) for f in dataclasses.fields(OpCosts)]
    assert "idle" in p.sources["static_w_per_chip"]
    estimate(activity(), CHIPS, p.costs)  # usable as is


def test_loihi2_preset_follows_intels_statement():
    old, new = PRESETS["Loihi (2018 measurements)"].costs, PRESETS["Loihi 2 (Intel's public statements)"].costs
    for field in ("synop_ns", "neuron_update_ns", "message_ns", "barrier_ns"):
        assert getattr(new, field) == pytest.approx(getattr(old, field) / 10)
    for field in ("synop_pj", "neuron_update_pj", "message_pj", "static_w_per_chip"):
        assert getattr(new, field) == getattr(old, field)
    assert "10" in PRESETS["Loihi 2 (Intel's public statements)"].sources["synop_ns"]


def test_custom_preset_marks_what_the_user_changed():
    base = next(iter(PRESETS))
    custom = custom_preset(dataclasses.replace(PRESETS[base].costs, static_w_per_chip=0.05), base)
    assert custom.name == CUSTOM
    assert custom.sources["static_w_per_chip"] == "set by you"
    assert custom.sources["synop_pj"] == PRESETS[base].sources["synop_pj"]


def test_paper_ratios_by_hand():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    table = ratios(est, GpuBaseline(tokens_per_s=100_000, watts=10, ttft_s=1e-3))
    ours = table["our estimate (ratio vs your baseline)"].to_list()
    assert ours[0] == pytest.approx((1 / 2750e-9) / 100_000)
    assert ours[1] == pytest.approx((10 / 100_000 * 1e3) / (2750e-6 + 324e-9))  # baseline mJ/token over ours
    assert ours[2] == pytest.approx(1e-3 / (2750e-9 + 2 * 1425e-9))
    assert table["paper (ratio vs GPU)"].to_list() == [r for _, r, _ in PAPER_CLAIMS] == [3.0, 2.0, 6.6]
    sources = GpuBaseline().table()["source"].to_list()
    assert "NVIDIA" in sources[1] and sources[0].startswith("not given")
    assert GpuBaseline(tokens_per_s=5, watts=7).table()["source"].to_list()[:2] == ["entered by you", "entered by you"]
    missing = ratios(est, GpuBaseline())
    assert missing["our estimate (ratio vs your baseline)"].null_count() == 3
    with pytest.raises(BaselineError, match="watts"):
        GpuBaseline(watts=0)


def test_hardware_limits_table_has_a_source_for_every_limit():
    from inspector.emulator.hardware import HardwareConfig

    table = HardwareConfig().table()
    assert table.height == len(dataclasses.fields(HardwareConfig)) and all(table["source"].to_list())
    changed = HardwareConfig(bits_per_synapse=2).table()
    assert changed.filter(pl.col("limit") == "bits_per_synapse")["source"].item() == "set by you (what-if)"
