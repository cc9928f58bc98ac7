"""The time and energy model on small hand-computed activity tables, the cost presets and the paper ratios."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from inspector.chip.costs import CUSTOM, FITTED_NAME, PRESETS, CostError, OpCosts, custom_preset, preset
from inspector.chip.estimate import estimate
from inspector.chip.paper import (
    PAPER_CLAIMS,
    BaselineError,
    GpuBaseline,
    estimate_figures,
    measured_table,
    ratios,
    statements_table,
)

# round numbers so that every figure below can be checked by hand
COSTS = OpCosts(
    synop_pj=1, synop_ns=1, neuron_update_pj=2, neuron_update_ns=10, neuron_inactive_pj=1, neuron_inactive_ns=5, message_pj=4,
    message_ns=100, static_w_per_chip=0.5, barrier_ns=200, barrier_per_doubling_ns=100, chip_crossing_ns=0,
)
CHIPS = 2  # synchronization floor: 200 + 100 * log2(2) = 300 ns


def activity(chips: tuple[int, ...] = (0,) * 6) -> pl.DataFrame:
    """Two tokens, one layer of two groups: A on cores 0-1, B on core 2. A neuron that sends a message is active."""
    rows = [
        # token, core, group, synops, neuron_updates, messages   core work (1 active update if any message)
        (0, 0, "A", 100, 5, 1),  # 100*1 + 1*10 + 4*5 + 1*100 = 230 ns
        (0, 1, "A", 300, 5, 0),  # 300 + 5*5 = 325 ns -> stage A = max(325, floor 300) = 325
        (0, 2, "B", 0, 20, 3),  # 10 + 19*5 + 300 = 405 ns -> stage B = 405
        (1, 0, "A", 0, 5, 0),  # 25 ns
        (1, 1, "A", 100, 5, 2),  # 100 + 10 + 20 + 200 = 330 ns -> stage A = 330
        (1, 2, "B", 0, 20, 1),  # 10 + 95 + 100 = 205 ns -> stage B = the floor, 300
    ]
    return pl.DataFrame(
        {
            "token": [r[0] for r in rows], "core": [r[1] for r in rows], "chip": list(chips), "layer": [0] * 6,
            "group": [r[2] for r in rows], "messages": [r[5] for r in rows], "active_neurons": [min(r[5], 1) for r in rows],
            "synops": [r[3] for r in rows], "neuron_updates": [r[4] for r in rows],
            # a group's size, deliberately not its updates: the estimate must charge neuron updates
            "neurons": [7 * r[4] + 3 for r in rows],
        }
    )


def test_timing_by_hand_two_chips():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    assert est.sync_floor_ns == pytest.approx(300)
    # generation: latency = sum of stages: token 0 = 325 + 405 = 730 ns, token 1 = 330 + 300 = 630 ns
    assert est.per_token["latency_us"].to_list() == pytest.approx([0.730, 0.630])
    assert est.generation.seconds_per_token == pytest.approx(680e-9)
    assert est.generation.tokens_per_s == pytest.approx(1 / 680e-9)
    # prefill: one token per slowest stage: 405 and 330 ns
    assert est.prefill.seconds_per_token == pytest.approx(367.5e-9)
    # time to first token of a 3-token prompt: one full latency + 2 pipeline intervals
    assert est.time_to_first_token_s == pytest.approx(680e-9 + 2 * 367.5e-9)
    assert est.latency_per_token_ms == pytest.approx(680e-6)
    assert est.steps_per_token == 2 and est.crossings == 0


def test_timing_by_hand_one_chip_and_a_crossing():
    one = estimate(activity(), 1, COSTS, prompt_tokens=3)
    # one chip: floor = 200 ns, so token 1's stage B takes its own 205 ns
    assert one.sync_floor_ns == pytest.approx(200)
    assert one.per_token["latency_us"].to_list() == pytest.approx([0.730, 0.535])
    assert one.generation.static_mj == pytest.approx(0.5 * 632.5e-9 * 1e3)
    # B on a second chip: one crossing per token, 50 ns each, in generation only
    crossed = estimate(activity((0, 0, 1, 0, 0, 1)), CHIPS, dataclasses.replace(COSTS, chip_crossing_ns=50), prompt_tokens=3)
    assert crossed.crossings == 1
    assert crossed.generation.seconds_per_token == pytest.approx(730e-9)
    assert crossed.prefill.seconds_per_token == pytest.approx(367.5e-9)
    assert crossed.per_group["crossing_ns"].to_list() == [0, 50]


def test_energy_by_hand():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    # dynamic, mean over the two tokens: synops (400 + 100) / 2 * 1 pJ; updates: 2 active * 2 pJ + 28 inactive * 1 pJ
    # per token; messages (4 + 3) / 2 * 4 pJ
    for phase in (est.generation, est.prefill):
        assert phase.synops_mj == pytest.approx(250e-9)
        assert phase.neuron_mj == pytest.approx(32e-9)
        assert phase.message_mj == pytest.approx(14e-9)
    # static: 2 chips * 0.5 W * the time a token occupies them
    assert est.generation.static_mj == pytest.approx(1.0 * 680e-9 * 1e3)
    assert est.prefill.static_mj == pytest.approx(1.0 * 367.5e-9 * 1e3)
    assert est.energy_per_token_mj == pytest.approx(680e-6 + 296e-9)
    # per token (generation): token 0 = 400 + 32 + 16 pJ dynamic + 1 W * 730 ns
    assert est.per_token["energy_uj"].to_list() == pytest.approx([448e-6 + 0.730, 144e-6 + 0.630])


def test_more_chips_never_lower_static_energy():
    statics = [estimate(activity(), n, COSTS).generation.static_mj for n in (1, 2, 3, 4, 8, 24, 100, 1000)]
    assert all(b >= a for a, b in zip(statics, statics[1:], strict=False))
    prefill = [estimate(activity(), n, COSTS).prefill.static_mj for n in (1, 2, 3, 4, 8, 24, 100, 1000)]
    assert all(b >= a for a, b in zip(prefill, prefill[1:], strict=False))


def test_halving_synaptic_operations_halves_their_energy():
    base = estimate(activity(), CHIPS, COSTS)
    half = estimate(activity().with_columns(pl.col("synops") // 2), CHIPS, COSTS)
    assert half.generation.synops_mj == pytest.approx(base.generation.synops_mj / 2)
    assert half.generation.neuron_mj == pytest.approx(base.generation.neuron_mj)


def test_breakdown_per_group_and_layer_adds_up():
    est = estimate(activity(), CHIPS, COSTS)
    g = {row["group"]: row for row in est.per_group.iter_rows(named=True)}
    assert g["A"]["stage_ns"] == pytest.approx(327.5) and g["B"]["stage_ns"] == pytest.approx(352.5)
    assert g["A"]["static_uj"] == pytest.approx(0.3275) and g["B"]["static_uj"] == pytest.approx(0.3525)
    assert g["A"]["synops_uj"] == pytest.approx(250e-6) and g["B"]["synops_uj"] == 0
    assert g["B"]["message_uj"] == pytest.approx(2 * 4e-6)
    layer = est.per_layer().row(0, named=True)
    assert layer["static_uj"] * 1e-3 == pytest.approx(est.generation.static_mj)
    dynamic = layer["synops_uj"] + layer["neuron_uj"] + layer["message_uj"]
    assert dynamic * 1e-3 == pytest.approx(est.generation.dynamic_mj)
    summary = est.summary()
    assert summary.filter(pl.col("figure") == "tokens/s")["value"].to_list() == pytest.approx([1 / 367.5e-9, 1 / 680e-9])


def test_costs_scale_energy_and_time_separately():
    base = estimate(activity(), CHIPS, COSTS)
    slow = estimate(
        activity(), CHIPS, dataclasses.replace(
            COSTS, synop_ns=2, neuron_update_ns=20, neuron_inactive_ns=10, message_ns=200, barrier_ns=400,
            barrier_per_doubling_ns=200,
        ),
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
    with pytest.raises(CostError, match="static power per chip"):
        OpCosts(static_w_per_chip=float("nan"))
    with pytest.raises(CostError, match="absurd"):
        OpCosts(barrier_ns=1e15)
    with pytest.raises(CostError, match="chips = 2,000,000 is absurd"):
        estimate(activity(), 2_000_000, COSTS)
    with pytest.raises(CostError, match="chips must be a whole number >= 1"):
        estimate(activity(), 0, COSTS)
    with pytest.raises(CostError, match="no cost preset"):
        preset("Loihi 3")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_loads_with_a_source_for_every_number(name):
    p = preset(name)
    table = p.table()
    assert table.height == len(dataclasses.fields(OpCosts))
    assert all(source.strip() for source in table["source"].to_list())
    assert table["value"].to_list() == [float(getattr(p.costs, f.name)) for f in dataclasses.fields(OpCosts)]
    estimate(activity(), CHIPS, p.costs)  # usable as is


def test_first_loihi_preset_is_davies_table_2_and_frady():
    p = PRESETS["Loihi (2018 figures)"]
    c = p.costs
    assert (c.synop_pj, c.synop_ns) == (23.6, 3.5)
    assert (c.neuron_update_pj, c.neuron_update_ns, c.neuron_inactive_pj, c.neuron_inactive_ns) == (81, 8.4, 52, 5.3)
    assert c.message_pj == pytest.approx(1.7 + 3.5)
    assert "maximum time" in p.sources["synop_ns"] and "pre-silicon" in p.sources["synop_pj"]
    assert c.sync_floor_ns(1) == 465
    assert c.sync_floor_ns(256) == pytest.approx(14_300)  # Frady et al. 2020: a 256-chip column
    assert c.sync_floor_ns(768) == pytest.approx(16_200, rel=0.06)  # 768 chips: 16.2 us measured
    assert c.static_w_per_chip == pytest.approx(3.34 / 32, rel=0.01)


def test_loihi2_preset_applies_each_statement_to_what_it_was_said_about():
    old, new = PRESETS["Loihi (2018 figures)"].costs, PRESETS["Loihi 2 (Intel's statements)"]
    assert new.costs.neuron_update_ns == pytest.approx(old.neuron_update_ns / 2)
    assert new.costs.neuron_inactive_ns == pytest.approx(old.neuron_inactive_ns / 2)
    assert new.costs.message_ns == pytest.approx(old.message_ns / 10)
    assert new.costs.synop_ns == pytest.approx(old.synop_ns / 10)
    assert new.costs.barrier_ns == old.barrier_ns
    for field in ("synop_pj", "neuron_update_pj", "neuron_inactive_pj", "message_pj"):
        assert getattr(new.costs, field) == getattr(old, field)
    assert "2x" in new.sources["neuron_update_ns"] and "10x" in new.sources["message_ns"]
    assert new.costs.static_w_per_chip == 1.0 and "16-chip" in new.sources["static_w_per_chip"]


def test_fitted_preset_says_it_is_fitted_and_what_to_compare_with():
    p = PRESETS[FITTED_NAME]
    assert next(iter(PRESETS)) == FITTED_NAME  # the page's default
    for field in ("synop_pj", "static_w_per_chip", "barrier_per_doubling_ns", "synop_ns"):
        assert p.sources[field].startswith("fitted to the paper's 24-chip 370M measurement")
    assert "23.6 pJ" in p.compare["synop_pj"] and "1 W per chip" in p.compare["static_w_per_chip"]
    assert "14.3" in p.compare["barrier_per_doubling_ns"]
    assert p.table()["public figure to compare"].to_list().count("") < p.table().height


def test_custom_preset_marks_what_the_user_changed():
    base = next(iter(PRESETS))
    custom = custom_preset(dataclasses.replace(PRESETS[base].costs, static_w_per_chip=0.05), base)
    assert custom.name == CUSTOM
    assert custom.sources["static_w_per_chip"] == "set by you"
    assert custom.sources["synop_pj"] == PRESETS[base].sources["synop_pj"]


def test_paper_ratios_by_hand():
    est = estimate(activity(), CHIPS, COSTS, prompt_tokens=3)
    table = ratios(estimate_figures(est), GpuBaseline(tokens_per_s=100_000, energy_mj=0.1, ttft_s=1e-3))
    ours = table["our estimate vs this baseline"].to_list()
    assert ours[0] == pytest.approx((1 / 680e-9) / 100_000)
    assert ours[1] == pytest.approx(0.1 / (680e-6 + 296e-9))  # baseline mJ/token over ours
    assert ours[2] == pytest.approx(1e-3 / (680e-9 + 2 * 367.5e-9))
    assert table["paper's claim"].to_list() == [r for _, r, _ in PAPER_CLAIMS] == [3.0, 2.0, 6.6]
    # the paper's own figures against its own Jetson numbers reproduce its claims
    jetson = ratios(estimate_figures(est), GpuBaseline())["paper's 24-chip figure vs this baseline"].to_list()
    assert jetson == pytest.approx([41.5 / 15.4, 719 / 405, 0.659 / 0.099])
    assert all("Jetson" in s and "as reported" in s for s in GpuBaseline().table()["source"].to_list())
    assert GpuBaseline(tokens_per_s=5).table()["source"].to_list()[0] == "entered by you"
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(BaselineError, match="baseline tokens/s"):
            GpuBaseline(tokens_per_s=bad)


def test_the_paper_table_is_as_reported():
    table = measured_table()
    assert table["Loihi 2, 24 chips"].to_list() == [41.5, 405.0, 6632.0, 3.7, 0.099]
    assert all("as reported" in s for s in table["source"].to_list())
    assert "12.6-15.4" in table["Jetson Orin Nano 8GB, FP16"].to_list()
    said = " ".join(statements_table()["the paper says"].to_list())
    for fact in ("71.3", "59 mJ", "14x", "H100", "0.4%", "39.6", "51.1", "16,000"):
        assert fact in said


def test_exported_estimates_read_back_with_polars():
    import io

    from inspector.chip.report import export_names, readable_seconds
    from inspector.views.exports import csv_bytes, parquet_bytes

    table = pl.DataFrame({"generation tokens/s": [41.5], "time to first token 500 tokens (s)": [0.099], "model": ["x"]})
    exported = export_names(table)
    assert exported.columns == ["generation_tokens_per_s", "time_to_first_token_500_tokens_s", "model"]
    assert pl.read_parquet(io.BytesIO(parquet_bytes(exported, {"run": 1}))).equals(exported)
    assert pl.read_csv(io.BytesIO(csv_bytes(exported, {"run": 1})), comment_prefix="#").equals(exported)
    assert readable_seconds(94.68) == "94.7 s" and readable_seconds(9468.0) == "2.6 h" and readable_seconds(0.0993) == "99.3 ms"


def test_hardware_limits_table_has_a_source_for_every_limit():
    from inspector.chip.limits import HardwareConfig

    table = HardwareConfig().table()
    assert table.height == len(dataclasses.fields(HardwareConfig)) and all(table["source"].to_list())
    changed = HardwareConfig(bits_per_synapse=2).table()
    assert changed.filter(pl.col("limit") == "bits_per_synapse")["source"].item() == "set by you (what-if)"


def test_groups_sharing_a_core_keep_their_data_flow_order():
    rows = [(0, 0, "mlgru"), (0, 0, "proj_ifg"), (0, 1, "proj_ifg"), (0, 0, "norm_attn")]  # all start on core 0
    table = pl.DataFrame(
        {
            "token": [r[0] for r in rows], "core": [r[1] for r in rows], "chip": [r[1] for r in rows], "layer": [0] * 4,
            "group": [r[2] for r in rows], "messages": [1] * 4, "active_neurons": [1] * 4, "synops": [10] * 4,
            "neuron_updates": [2] * 4, "neurons": [2] * 4,
        }
    )
    for seed in range(3):
        est = estimate(table.sample(fraction=1.0, shuffle=True, seed=seed), 2, COSTS)
        assert est.per_group["group"].to_list() == ["norm_attn", "proj_ifg", "mlgru"]
        assert est.crossings == 2  # proj_ifg spans chips 0 and 1: a message leaves a chip on either side of it
