"""Local vs cumulative error: a site's local error is only what its own integer arithmetic adds."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import torch

from inspector.backends.emulator import Emulator
from inspector.compare.local_error import FeedProbe, float_reference, local_vs_cumulative
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.tokenizer import encode
from inspector.quant.config import QuantConfig
from inspector.quant.convert import ResidualAdd
from tests.conftest import TINY_TEXT


def _ids(emulator: Emulator) -> list[int]:
    return encode(emulator.loaded.tokenizer, TINY_TEXT)[:40]


def _site(result, layer: int, site: str) -> dict:
    return result.sites.filter((pl.col("layer") == layer) & (pl.col("site") == site)).row(0, named=True)


def test_a_lossless_site_has_zero_local_but_nonzero_cumulative_error(tiny_checkpoint):
    """Layer 0's residual add made exact: power-of-two scales, the output on the finer input grid,
    wide enough not to clip. Fed quantized float inputs, it computes their sum exactly."""
    emulator = Emulator(load_checkpoint(tiny_checkpoint), QuantConfig(pow2_scales=True))
    layer = emulator.params.layers[0]
    s_x, s_o = layer.scales["input"], layer.scales["o_proj"]
    s_out = min(s_x, s_o)
    layer.residual_attn = ResidualAdd(round(s_x / s_out), round(s_o / s_out), 0, 24)
    layer.scales["residual_attn"] = s_out
    result = local_vs_cumulative(emulator, _ids(emulator))
    row = _site(result, 0, "residual_attn")
    assert row["local_nsr"] == 0.0 and math.isinf(row["local_sqnr_db"])
    assert row["cumulative_nsr"] > 1e-6  # it inherits the error of o_proj and everything before
    # an ordinary site next to it does have local error
    assert _site(result, 0, "o_proj")["local_nsr"] > 0


def test_embeddings_local_equals_cumulative_and_errors_accumulate(tiny_checkpoint):
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    result = local_vs_cumulative(emulator, _ids(emulator))
    emb = _site(result, -1, "embeddings")
    # nothing to inherit before the first site (the recorded cumulative values are float32, hence isclose)
    assert emb["local_nsr"] > 0 and math.isclose(emb["local_nsr"], emb["cumulative_nsr"], rel_tol=1e-5)
    last = _site(result, -1, "final_norm")
    assert last["cumulative_nsr"] > last["local_nsr"]  # deep in the stack, most error is inherited
    assert result.sites["introduces"].sum() == 3
    top = result.sites.filter(pl.col("introduces"))["local_nsr"].min()
    assert top >= result.sites.filter(~pl.col("introduces"))["local_nsr"].max()
    assert result.tokens.height == result.sites.height * 40


def test_feed_probe_feeds_quantized_float_values(tiny_checkpoint):
    """With the feeding probe, what the next operation receives is the float value on the site's grid."""
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    ids = _ids(emulator)
    trace: dict = {}
    with torch.no_grad():
        emulator.loaded.model(torch.tensor([ids]), None, trace)
    floats = {k: v[0] for k, v in trace.items()}
    probe = FeedProbe(floats, emulator.params)
    emulator.integer(torch.tensor([ids]), None, probe)
    scale = emulator.params.layers[1].scales["mlp_norm"]
    fed = probe.fed["layers.1.mlp_norm"]
    assert torch.equal(fed, torch.floor(floats["layers.1.mlp_norm"].double() / scale + 0.5).clamp(-128, 127) * scale)
    # the fed run does not disturb ordinary runs: same logits as before
    logits_a, _ = emulator.integer(torch.tensor([ids]), None, None)
    logits_b, _ = emulator.teacher_forced(ids, record_tensors=False)
    assert torch.equal(logits_a[0], logits_b)


def test_the_float_side_is_the_float_model_s_own_forward_pass_fed_the_given_values(tiny_checkpoint):
    """Fed its own values, the float model reproduces every site bit for bit (the recurrence's steps, computed
    from fed states at once, included); fed other values, each operation reads those.

    Except the GLU product in its last float32 bit: unfed, SiLU reads the gate as a strided half of gate_proj's
    output, fed as a contiguous tensor, and PyTorch computes the tail of each strided row (past a multiple of
    its vector width) with its scalar SiLU, which rounds differently from the vectorized one. Local error
    compares like with like: both of its sides read contiguous fed values."""
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    model, ids = emulator.loaded.model, _ids(emulator)
    trace: dict = {}
    with torch.no_grad():
        model(torch.tensor([ids]), None, trace)
    own = {key: value[0].double() for key, value in trace.items()}
    reference = float_reference(model, ids, own)
    assert list(reference) == list(trace)
    for key, value in trace.items():
        if key.endswith(".glu"):
            assert torch.allclose(reference[key], value[0], rtol=1e-6, atol=0), key
        else:
            assert torch.equal(reference[key], value[0]), key
    zeros = {key: torch.zeros_like(own[key]) for key in ("layers.0.o_proj", "layers.1.hidden")}
    reference = float_reference(model, ids, {**own, **zeros})
    assert torch.equal(reference["layers.0.o_proj"], trace["layers.0.o_proj"][0])  # computed from its own fed inputs
    assert torch.equal(reference["layers.0.residual_attn"], trace["embeddings"][0])  # x + the fed zeros
    assert torch.equal(reference["layers.1.hidden"], trace["layers.1.input_gate"][0])  # f * (fed h = 0) + i


def test_the_window_s_local_error_is_the_whole_sequence_s_restricted_to_the_window(tiny_checkpoint):
    """Computed over a comparison that kept per-neuron values from token 25 on (what a page with a
    long prompt has), local and cumulative errors per token are the whole sequence's for those tokens."""
    from inspector.compare.diff import compare

    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    ids = _ids(emulator)
    whole = local_vs_cumulative(emulator, ids)
    windowed = local_vs_cumulative(emulator, ids, compare(emulator, ids, keep_from=25))
    assert windowed.window_start == 25 and windowed.tokens["token"].min() == 25
    assert windowed.tokens.height == windowed.sites.height * (len(ids) - 25)
    expected = whole.tokens.filter(pl.col("token") >= 25).sort("layer", "site", "token")
    got = windowed.tokens.sort("layer", "site", "token")
    assert got.select("token", "layer", "site").equals(expected.select("token", "layer", "site"))
    for column in ("local_nsr", "cumulative_nsr"):
        a, b = got[column].to_numpy(), expected[column].to_numpy()
        assert np.allclose(a, b, rtol=1e-5, atol=1e-12), column
    # the hidden state's local error depends on the float state before the window: it is there
    hidden = got.filter((pl.col("site") == "hidden") & (pl.col("token") == 25))["local_nsr"].to_numpy()
    assert np.allclose(hidden, expected.filter((pl.col("site") == "hidden") & (pl.col("token") == 25))["local_nsr"].to_numpy())


def test_a_local_error_result_counts_its_tables_in_the_run_cache_budget(tiny_checkpoint):
    from inspector.serve.run_cache import RunCache

    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    result = local_vs_cumulative(emulator, _ids(emulator))
    size = result.nbytes()
    assert size >= result.tokens.estimated_size() > 0
    # 40 tokens x every site x (3 identifying + 4 float columns): at least 8 bytes per float cell
    assert size >= result.tokens.height * 4 * 8
    cache = RunCache(budget_bytes=size + size // 2)
    cache.put(("local_split", "a"), result, size, "tab")
    assert cache.total_bytes() == size
    cache.put(("local_split", "b"), result, size, "tab")  # two do not fit the budget: the older one goes
    assert len(cache) == 1 and cache.get(("local_split", "a"), "tab") is None
