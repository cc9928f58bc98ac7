"""Emulator runs: probes count what the integer tensors say, traces round-trip through Parquet,
the diff engine's metrics are right, and the CLI reports errors without tracebacks."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch
from polars.testing import assert_frame_equal

from inspector.backends.emulator import Emulator
from inspector.cli import main as cli_main
from inspector.compare.analysis import analyze
from inspector.compare.diff import compare, lockstep_ids, tensor_metrics
from inspector.compare.traces import read_traces, run_tables, write_traces
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings
from inspector.lm.tokenizer import encode


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
    per_token = activity.filter(
        (pl.col("layer") == 1) & (pl.col("group") == "proj_o"),
    ).group_by("token").agg(pl.col("messages").sum()).sort("token")
    assert per_token["messages"].to_list() == (o_codes != 0).sum(dim=1).tolist()
    # synaptic ops of down_proj == sum over active inputs of nonzero weights (plain loop)
    layer = emulator.params.layers[0]
    spikes = probe.site_codes("layers.0.down_proj.spikes")
    w = layer.down_proj.weight
    expected = [sum(int((w[:, j] != 0).sum()) for j in range(w.shape[1]) if spikes[t, j] != 0) for t in range(len(ids))]
    got = activity.filter(
        (pl.col("layer") == 0) & (pl.col("group") == "proj_down"),
    ).group_by("token").agg(pl.col("synops").sum()).sort("token")
    assert got["synops"].to_list() == expected
    # neuron updates: every neuron of the model once per token, counted from the architecture (not
    # from the core map's own neuron column): per layer D (attn norm) + 3M (i, f, g) + M (MLGRU)
    # + D (o) + D (MLP norm) + 2I (gate, y) + I (GLU) + D (down) + D (residual), and D final-norm neurons
    c = emulator.loaded.config
    D, M, I = c.hidden_size, c.mixer_size, c.mlp_intermediate_size  # noqa: E741 (I: the MLP width, as in the equations)
    per_token = c.num_hidden_layers * (5 * D + 4 * M + 3 * I) + D
    per_tok = activity.group_by("token").agg(pl.col("neuron_updates").sum()).sort("token")
    assert per_tok["neuron_updates"].to_list() == [per_token] * len(ids)
    # a neuron that sent any message is active; none sends more than its group's outputs per token
    assert (activity["active_neurons"] <= activity["neurons"]).all()
    assert (activity["active_neurons"] <= activity["messages"]).all()
    attn = activity.filter(pl.col("group") == "norm_attn")
    assert (attn["messages"] <= 3 * attn["neurons"]).all() and (attn["messages"] > attn["neurons"]).any()


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
        if name == "saturation":  # written with an underflow column (null: no comparison given)
            assert back[name]["underflow"].is_null().all()
            back[name] = back[name].drop("underflow")
        assert_frame_equal(back[name], table)


def test_window_keeps_per_token_summaries_for_every_token(emulator):
    """Per-neuron data only for the window; per-token tables and metrics for every token, equal to a
    run that kept everything."""
    ids = encode(emulator.loaded.tokenizer, "To be, or not to be, that is the question: whether 'tis nobler")
    full = compare(emulator, ids)
    windowed = compare(emulator, ids, keep_from=len(ids) - 4, chunk_tokens=5)
    assert_frame_equal(full.tokens, windowed.tokens)
    # float model: chunked vs whole
    assert_frame_equal(full.tensors, windowed.tensors, check_exact=False, rel_tol=1e-3, abs_tol=1e-4)
    assert windowed.int_probe.window_start == len(ids) - 4
    assert windowed.float_logits.shape[0] == 4 and torch.equal(windowed.int_logits, full.int_logits[-4:])
    key = "layers.1.hidden"
    assert torch.equal(windowed.int_probe.site_values(key), full.int_probe.site_values(key)[-4:])
    assert_frame_equal(windowed.int_probe.activity(), full.int_probe.activity())
    assert_frame_equal(windowed.int_probe.saturation(), full.int_probe.saturation())
    assert windowed.int_probe.states()["token"].min() == len(ids) - 4
    assert windowed.int_probe.nbytes() < full.int_probe.nbytes() / 2


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
    assert analysis.window_start == len(analysis.run.prompt_ids) - 1  # default window: the generated part
    rerun = compare(emulator, analysis.run.all_ids, keep_from=analysis.window_start, chunk_tokens=3)
    assert analysis.diff.int_probe is analysis.run.probe  # no second integer run over the window
    assert rerun.int_probe is not analysis.run.probe
    assert torch.equal(analysis.diff.int_logits, rerun.int_logits)
    # the float model read in chunks of 3 here: the same up to float rounding
    assert_frame_equal(analysis.diff.tensors, rerun.tensors, check_exact=False, rel_tol=1e-3, abs_tol=1e-4)
    assert_frame_equal(analysis.diff.tokens, rerun.tokens, check_exact=False, rel_tol=1e-3, abs_tol=1e-4)
    for key in analysis.diff.sites():
        assert torch.equal(analysis.run.probe.site_values(key), rerun.int_probe.site_values(key)), key


@pytest.mark.parametrize("window_start", [0, 3])
def test_lockstep_on_a_wider_window_reads_the_run_with_the_same_bits(emulator, window_start):
    """The CLI's lockstep comparison reads a run that kept every token (or from a token before the
    comparison's window) instead of running the integer model again: the same tables, bit for bit."""
    run, stream = emulator.generate("To be, or", SamplingSettings(6, 0.9, 20, 3), keep_from=window_start)
    for _ in stream:
        pass
    ids = run.all_ids
    for keep_from, chunk_tokens in ((len(ids) - 1, 256), (len(ids) - 2, 4)):
        reused = compare(emulator, ids, integer_probe=run.probe, keep_from=keep_from, chunk_tokens=chunk_tokens)
        rerun = compare(emulator, ids, keep_from=keep_from, chunk_tokens=chunk_tokens)
        assert reused.int_probe is run.probe and rerun.int_probe is not run.probe
        assert_frame_equal(reused.tensors, rerun.tensors, check_exact=True)
        assert_frame_equal(reused.tokens, rerun.tokens, check_exact=True)
        assert torch.equal(reused.int_logits, rerun.int_logits) and torch.equal(reused.float_logits, rerun.float_logits)
        assert reused.window_start == rerun.window_start == keep_from


def test_cli_run_and_diff(tiny_checkpoint, tmp_path, capsys):
    assert cli_main(
        ["run", "--model", str(tiny_checkpoint), "--prompt", "To be", "--tokens", "4", "--out", str(tmp_path / "o")],
    ) == 0
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
        (["measure", "--config", "GPT-5"], "unknown --config"),
        (["run", "--prompt", "x", "--out", "o", "--backend", "loihi2"], "lava-loihi"),
    ],
)
def test_cli_errors_are_one_line(tiny_checkpoint, argv, message, capsys, tmp_path):
    argv = [a if a != "o" else str(tmp_path / "o") for a in argv]
    if "--model" not in argv and argv[0] not in ("map", "measure"):
        argv += ["--model", str(tiny_checkpoint)]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cli_traces_count_underflow_and_effective_bits(tiny_checkpoint, tmp_path):
    """With the narrowest widths the MLGRU states underflow: the traces say so (not "nothing clipped"),
    with the bits used beside the bits available; --window keeps per-neuron tables for the last tokens."""
    out = tmp_path / "narrow"
    narrow = ["state_bits=6", "internal_bits=6", "act_bits=3", "spike_bits=3", "residual_bits=3"]
    argv = [
        "run", "--model", str(tiny_checkpoint), "--prompt", "To be, or not", "--tokens", "3", "--out", str(out), "--window", "2",
        "--quant", *narrow,
    ]
    assert cli_main(argv) == 0
    saturation = pl.read_parquet(out / "saturation.parquet")
    hidden = saturation.filter(pl.col("site") == "hidden")
    assert hidden["underflow"].sum() > 0
    assert (hidden["bits"] == 6).all()
    assert (saturation["effective_bits"] <= saturation["bits"]).all() and (saturation["effective_bits"] >= 1).all()
    assert saturation.filter(pl.col("site").str.ends_with(".accumulator"))["underflow"].is_null().all()  # no float counterpart
    tokens = pl.read_parquet(out / "tokens.parquet").height
    assert pl.read_parquet(out / "states.parquet")["token"].unique().sort().to_list() == [tokens - 2, tokens - 1]
    assert saturation["token"].n_unique() == tokens  # summaries for every token


def test_max_abs_error_is_the_plain_abs_amax():
    """The one-pass max|error| per token gives the bits of `err.abs().amax(-1)` (NaN and infinities included)."""
    g = torch.Generator().manual_seed(4)
    f = torch.randn(6, 41, generator=g, dtype=torch.float64)
    q = f + torch.randn(6, 41, generator=g, dtype=torch.float64) * 1e-3
    q[1, 5], q[2, 0], q[3, 40], q[4] = float("nan"), float("inf"), -float("inf"), f[4]
    got = tensor_metrics(f, q)["max_abs_error"]
    want = (f - q).abs().amax(-1)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got[~want.isnan()], want[~want.isnan()])
    assert float(got[4]) == 0.0
