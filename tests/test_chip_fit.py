"""The preset fitted to the paper's 24-chip measurement: the fit recovers known constants, reproduces the
paper's five figures from the pinned 370M table within 10%, and its reduced arithmetic is the estimate's."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from inspector.chip.costs import FITTED, FITTED_NAME, PRESETS, fitted_costs
from inspector.chip.estimate import estimate
from inspector.chip.fit import PARAMS, FitTable, figures, fit, fit_paper, fit_table, single_chip, single_chip_table
from inspector.chip.paper import MEASURED_24, estimate_figures, residual_table

FIVE = [f.name for f in MEASURED_24]


def synthetic_activity() -> pl.DataFrame:
    """3 tokens through 2 layers of 3 groups on 4 chips: heavy synapse groups (work-bound) and light ones
    (floor-bound), so that both time constants show in the figures."""
    rows = []
    for token in range(3):
        core = 0
        for layer in range(2):
            for group, synops, updates in (("norm", 0, 400), ("proj", 60_000 + 5_000 * token, 200), ("glu", 0, 900)):
                for part in range(2):
                    messages = updates // (2 + part)
                    rows.append({
                        "token": token, "core": core, "chip": core // 3, "layer": layer, "group": group,
                        "messages": messages, "active_neurons": messages, "synops": synops // (1 + part),
                        "neuron_updates": updates, "neurons": updates,
                    })
                    core += 1
    return pl.DataFrame(rows)


def test_reduced_figures_are_the_estimates():
    activity = synthetic_activity()
    costs = fitted_costs(4.0, 2.0, 0.3, 0.5)
    est = estimate(activity, 4, costs)
    table = fit_table(activity, 4)
    assert table.crossings == est.crossings and table.stages.height == 3 * est.steps_per_token
    got = figures(table, costs)
    for name, value in estimate_figures(est).items():
        assert got[name] == pytest.approx(value, rel=1e-12)


def test_the_fit_recovers_known_constants_from_a_table_made_with_them():
    activity = synthetic_activity()
    known = (4.0, 2.0, 0.3, 0.5)
    targets = {k: v for k, v in estimate_figures(estimate(activity, 4, fitted_costs(*known))).items() if k in FIVE}
    result = fit(fit_table(activity, 4), targets)
    assert [result.params[p] for p in PARAMS] == pytest.approx(list(known), rel=1e-5)
    assert result.worst < 1e-8


def test_the_pinned_370m_table_reproduces_the_papers_five_figures_within_10_percent():
    table = FitTable.load()
    assert (table.chips, table.crossings, table.model) == (24, 23, "MMfreeLM-370M")
    assert table.stages.filter(pl.col("token") == 0).height == 24 * 9 + 1  # steps per token: the core map's stages
    result = fit_paper(table)
    assert result.worst < 0.10, result.residuals
    # the preset holds the fit's output, not chosen numbers
    assert [FITTED[p] for p in PARAMS] == pytest.approx([result.params[p] for p in PARAMS], rel=1e-4)
    preset_figures = figures(table, PRESETS[FITTED_NAME].costs)
    residuals = residual_table(preset_figures)
    assert residuals["residual (%)"].abs().max() < 10
    assert residuals["paper measured (24 chips)"].to_list() == [41.5, 405.0, 6632.0, 3.7, 0.099]


def test_single_chip_is_held_out_and_computed_like_any_estimate():
    table = FitTable.load()
    costs = PRESETS[FITTED_NAME].costs
    ours = single_chip(table, costs)
    assert ours == figures(table, costs, chips=1, crossings=0)
    assert ours["gen_tps"] > 0 and ours["gen_mj"] > 0
    shown = single_chip_table(table, costs)
    assert shown["paper's single-chip estimate"].to_list() == [71.3, 59.0]
    # one chip synchronizes faster and idles less than 24: never slower, never more static energy
    assert ours["gen_tps"] > figures(table, costs)["gen_tps"] and ours["gen_mj"] < 405


def test_energy_split_for_a_model_and_a_preset(tiny_checkpoint):
    from inspector.backends.emulator import Emulator
    from inspector.chip.report import energy_split
    from inspector.lm.checkpoint import load_checkpoint

    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    _, probe = emulator.teacher_forced(list(range(3, 13)), record_tensors=False)
    split = energy_split(emulator.core_map.groups, probe.group_activity())
    assert set(split) == {"generation", "prefill"}
    gen = split["generation"]
    assert gen.static_mj > 0 and gen.dynamic_mj > 0 and gen.total_mj == pytest.approx(gen.static_mj + gen.dynamic_mj)
    assert split["prefill"].dynamic_mj == pytest.approx(gen.dynamic_mj)  # the same operations in both phases
    static = energy_split(emulator.core_map.groups, probe.group_activity(), "Loihi 2 (Intel's statements)")
    assert static["generation"].dynamic_mj > gen.dynamic_mj  # first Loihi's energies, unscaled


def test_lm_head_on_chip_adds_its_operations():
    from inspector.chip.mapper import lm_head_group
    from inspector.chip.report import lm_head_activity
    from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig

    head = lm_head_group(HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"]))
    final = (pl.Series([1, 0, 3] * 341 + [2]).to_numpy().reshape(1, -1) > 0).astype("uint8").repeat(2, axis=0)
    messages, synops = lm_head_activity(final, head)
    assert messages.shape == synops.shape == (2, 32000) and messages.sum() == 64000
    assert synops[0, 0] == round(683 * head.synapses[0] / 1024)


def test_fitted_costs_scale_what_they_say():
    base = PRESETS["Loihi 2 (Intel's statements)"].costs
    c = fitted_costs(2.0, 3.0, 0.5, 0.25)
    assert c.barrier_ns == 2 * base.barrier_ns and c.synop_ns == 3 * base.synop_ns and c.static_w_per_chip == 0.5
    assert c.message_pj == 0.25 * base.message_pj
    assert dataclasses.replace(c, chip_crossing_ns=0) == c  # crossings are not fitted


def test_cli_map_layouts_and_lm_head(capsys):
    import json

    from inspector.cli import main

    assert main(["map", "--config", "MMfreeLM-370M", "--layout", "one-block-per-chip"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["chips"], summary["layout"], summary["lm_head"]) == (24, "one-block-per-chip", "host")
    assert main(["map", "--config", "MMfreeLM-370M", "--layout", "packed", "--lm-head", "chip"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lm_head_chips"] == 2 and summary["lm_head_chips_paper_estimate"] == 7 and summary["chips"] == 16
    assert main(["map", "--config", "MMfreeLM-1.3B", "--layout", "one-block-per-chip"]) == 0
    assert "do not fit one chip" in capsys.readouterr().err


def test_cli_paper_prints_the_measurement_the_residuals_and_the_single_chip(capsys):
    from inspector.cli import main

    assert main(["paper"]) == 0
    out = capsys.readouterr().out
    for text in ("as reported", "6632", "residual", "fitted to the paper's 24-chip 370M measurement", "71.3", "23.6 pJ",
                 "217 time steps per token", "23 crossings"):
        assert text in out


@pytest.mark.parametrize(("args", "words"), [
    (["--prompt-tokens", "-5"], "--prompt-tokens must be a positive"),
    (["--prompt-tokens", "ten"], "--prompt-tokens must be a number"),
    (["--prompt-tokens", "5000000"], "--prompt-tokens 5,000,000 is absurd"),
    (["--static-w", "nan"], "--static-w must be a positive finite number"),
    (["--static-w", "0"], "--static-w must be a positive"),
    (["--preset", "Loihi 3"], "no cost preset 'Loihi 3'"),
    (["--config", "MMfreeLM-9B"], "unknown --config"),
    ([], "has not been measured"),
])
def test_cli_estimate_bad_input_names_the_field(args, words, capsys, monkeypatch, tmp_path):
    from inspector.cli import main

    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    assert main(["estimate", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and "Traceback" not in err


def test_cli_estimate_of_a_measured_size(capsys, monkeypatch, tmp_path):
    from inspector.cli import main
    from inspector.lm.config import PUBLISHED_CONFIGS

    monkeypatch.setitem(PUBLISHED_CONFIGS, "tiny-0.1B", {"hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 300,
                                                          "intermediate_size": 48})
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    argv = ["estimate", "--config", "tiny-0.1B", "--measure", "--quant", "calibration_tokens=64", "--lm-head", "chip"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "layout one-block-per-chip" in out and "LM head on the chip" in out and "generation_tokens_per_s" in out
    assert main([*argv, "--static-w", "0.5", "--layout", "packed"]) == 0
    assert "static power set" in capsys.readouterr().out
