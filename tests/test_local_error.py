"""Local vs cumulative error: a site's local error is only what its own integer arithmetic adds."""

from __future__ import annotations

import math

import polars as pl
import torch

from inspector.checkpoint import load_checkpoint
from inspector.emulator.engine import Emulator
from inspector.local_error import FeedProbe, local_vs_cumulative
from inspector.quant.config import QuantConfig
from inspector.quant.convert import ResidualAdd
from inspector.tokenizer import encode
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
    floats = {k: v[0] for k, v in trace.items() if not k.endswith("gate_proj")}
    probe = FeedProbe(floats, emulator.params)
    emulator.integer(torch.tensor([ids]), None, probe)
    scale = emulator.params.layers[1].scales["mlp_norm"]
    fed = probe.fed["layers.1.mlp_norm"]
    assert torch.equal(fed, torch.floor(floats["layers.1.mlp_norm"].double() / scale + 0.5).clamp(-128, 127) * scale)
    # the fed run does not disturb ordinary runs: same logits as before
    logits_a, _ = emulator.integer(torch.tensor([ids]), None, None)
    logits_b, _ = emulator.teacher_forced(ids, record_tensors=False)
    assert torch.equal(logits_a[0], logits_b)
