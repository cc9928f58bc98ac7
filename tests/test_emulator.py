"""Emulator runs: probes count what the integer tensors say, traces round-trip through Parquet,
the diff engine's metrics are right, and the CLI reports errors without tracebacks."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

from inspector.analysis import analyze
from inspector.checkpoint import load_checkpoint
from inspector.cli import main as cli_main
from inspector.diff import compare, lockstep_ids, tensor_metrics
from inspector.emulator.engine import Emulator
from inspector.generate import SamplingSettings
from inspector.traces import read_traces, run_tables, write_traces


@pytest.fixture()
def emulator(tiny_checkpoint):
    return Emulator(load_checkpoint(tiny_checkpoint))


def test_generation_is_deterministic_and_probed(emulator):
    settings = SamplingSettings(8, 1.0, 0, 3)
    run_a, stream_a = emulator.generate("To be, or", settings)
    ids_a = [t.token_id for t in stream_a]
    run_b, stream_b = emulator.generate("To be, or", settings)
    ids_b = [t.token_id for t in stream_b]
    assert ids_a == ids_b and len(ids_a) == 8
    ta, tb = run_tables(run_a, emulator), run_tables(run_b, emulator)
    for name in ta:
        assert_frame_equal(ta[name], tb[name])
    assert run_a.probe.tokens() == len(run_a.all_ids)


def test_activity_matches_the_integer_tensors(emulator):
    ids = emulator.loaded.tokenizer.encode("Once upon a time there was a little girl").ids
    _, probe = emulator.teacher_forced(ids)
    activity = probe.activity()
    # messages of the o_proj group on each token == nonzero o_proj codes
    o_codes = probe.site_codes("layers.1.o_proj")
    per_token = activity.filter((pl.col("layer") == 1) & (pl.col("group") == "proj_o")).group_by("token").agg(pl.col("messages").sum()).sort("token")
    assert per_token["messages"].to_list() == (o_codes != 0).sum(dim=1).tolist()
    # synaptic ops of down_proj == sum over active inputs of nonzero weights (plain loop)
    layer = emulator.params.layers[0]
    spikes = probe.site_codes("layers.0.down_proj.spikes")
    w = layer.down_proj.weight
    expected = [sum(int((w[:, j] != 0).sum()) for j in range(w.shape[1]) if spikes[t, j] != 0) for t in range(len(ids))]
    got = activity.filter((pl.col("layer") == 0) & (pl.col("group") == "proj_down")).group_by("token").agg(pl.col("synops").sum()).sort("token")
    assert got["synops"].to_list() == expected
    # neuron updates: every neuron once per token
    per_tok = activity.group_by("token").agg(pl.col("neuron_updates").sum())
    assert per_tok["neuron_updates"].n_unique() == 1
    assert per_tok["neuron_updates"][0] == int(emulator.core_map.table["neurons"].sum())


def test_unprobed_run_gives_same_tokens(emulator):
    settings = SamplingSettings(6, 0.0, 0, 0)
    probed, stream = emulator.generate("Lily", settings, probes=True)
    plain, stream2 = emulator.generate("Lily", settings, probes=False)
    assert [t.token_id for t in stream] == [t.token_id for t in stream2]
    assert plain.probe is None


def test_traces_round_trip_through_parquet(emulator, tmp_path):
    run, stream = emulator.generate("Whether", SamplingSettings(5, 0.8, 10, 1))
    list(stream)
    write_traces(run, emulator, tmp_path / "tr", {"prompt": "Whether"})
    back = read_traces(tmp_path / "tr")
    tables = run_tables(run, emulator)
    assert set(back) == set(tables)
    for name, table in tables.items():
        assert_frame_equal(back[name], table)


def test_tensor_metrics_known_values():
    f = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 4.0]])
    q = torch.tensor([[1.0, 2.0, 2.0], [3.0, 0.0, 3.0]])
    m = tensor_metrics(f, q)
    assert math.isinf(m["sqnr_db"][0])
    assert m["sqnr_db"][1].item() == pytest.approx(10 * math.log10(25 / 1))
    assert m["max_abs_error"].tolist() == [0.0, 1.0]
    assert m["rel_error"][1].item() == pytest.approx(1 / 5)
    assert m["cosine"][0].item() == pytest.approx(1.0)


def test_compare_lockstep(emulator):
    ids = lockstep_ids(emulator, "To be", "float", SamplingSettings(6, 0.0, 0, 0))
    result = compare(emulator, ids)
    assert result.tokens.height == len(ids)
    assert (result.tokens["kl"] >= -1e-9).all()
    # greedy float continuation: the float top-1 at each generated position is the next token
    tops = result.tokens["top1_float"].to_list()
    prompt_len = len(ids) - 6
    assert tops[prompt_len - 1 : -1] == ids[prompt_len:]
    assert result.perplexity_float > 1 and result.perplexity_int > 1
    layers = result.per_layer()
    assert set(layers["site"]) >= {"attn_norm", "hidden", "residual_mlp", "gate", "y"}


def test_analysis_reuses_the_generation_with_the_same_bits(emulator):
    """The analysis compares on the generation's own integers: identical to a teacher-forced rerun."""
    settings = SamplingSettings(7, 0.9, 20, 3)
    analysis = analyze(emulator, "To be, or", settings)
    rerun = compare(emulator, analysis.run.all_ids)
    assert analysis.diff.int_probe is analysis.run.probe  # no second integer run
    assert torch.equal(analysis.diff.int_logits, rerun.int_logits)
    assert_frame_equal(analysis.diff.tensors, rerun.tensors)
    assert_frame_equal(analysis.diff.tokens, rerun.tokens)
    for key in analysis.diff.sites():
        assert torch.equal(analysis.run.probe.site_values(key), rerun.int_probe.site_values(key)), key


def test_cli_run_and_diff(tiny_checkpoint, tmp_path, capsys):
    assert cli_main(["run", "--model", str(tiny_checkpoint), "--prompt", "To be", "--tokens", "4", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "activity.parquet").exists()
    text_file = tmp_path / "t.txt"
    text_file.write_text("Once upon a time there was a little girl named Lily.")
    assert cli_main(["diff", "--model", str(tiny_checkpoint), "--text", str(text_file)]) == 0
    out = capsys.readouterr().out
    assert "top-1 agreement" in out and "residual_mlp" in out
    assert "perplexity of both models on the same tokens (the text)" in out
    assert cli_main(["diff", "--model", str(tiny_checkpoint), "--text", str(text_file), "--max-tokens", "4"]) == 0
    assert "only the first 4 are compared" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "--model", "/nonexistent", "--prompt", "x", "--out", "o"], "not a directory"),
        (["run", "--prompt", "  ", "--out", "o"], "empty"),
        (["run", "--prompt", "x", "--out", "o", "--quant", "state_bits=40"], "register"),
        (["run", "--prompt", "x", "--out", "o", "--tokens", "0"], "between 1 and"),
        (["map", "--config", "GPT-5"], "unknown --config"),
        (["run", "--prompt", "x", "--out", "o", "--backend", "loihi2"], "lava-loihi"),
    ],
)
def test_cli_errors_are_one_line(tiny_checkpoint, argv, message, capsys, tmp_path):
    argv = [a if a != "o" else str(tmp_path / "o") for a in argv]
    if "--model" not in argv and argv[0] != "map":
        argv += ["--model", str(tiny_checkpoint)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
