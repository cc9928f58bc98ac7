"""The Lava backend: the smallest sample model runs through Lava's fixed-point simulator and every
output token and every probed integer tensor equals the emulator's, bit for bit."""

from __future__ import annotations

import torch

from inspector.backends import status_of
from inspector.catalog import SAMPLE_MODELS_DIR
from inspector.checkpoint import load_checkpoint
from inspector.emulator.engine import make_backend
from inspector.generate import SamplingSettings


def _smallest_sample_model():
    models = [load_checkpoint(p) for p in sorted(SAMPLE_MODELS_DIR.iterdir()) if (p / "config.json").exists()]
    return min(models, key=lambda m: m.model.num_parameters())


def test_lava_generation_is_bit_exact_with_the_emulator():
    loaded = _smallest_sample_model()
    settings = SamplingSettings(max_new_tokens=8, temperature=0.9, top_k=20, seed=11)
    emulator = make_backend("emulator", loaded)
    lava = make_backend("lava", loaded)
    try:
        e_run, e_stream = emulator.generate("Once upon a", settings)
        e_tokens = [t.token_id for t in e_stream]
        l_run, l_stream = lava.generate("Once upon a", settings)
        l_tokens = [t.token_id for t in l_stream]
    finally:
        lava.close()
    assert len(l_tokens) == 8
    assert l_tokens == e_tokens
    e_probe, l_probe = e_run.probe, l_run.probe
    assert l_probe.tokens() == e_probe.tokens() == len(e_run.all_ids)
    integer_sites = [k for k, r in e_probe.sites.items() if r.kind != "host"]
    assert len(integer_sites) > 100
    for key in integer_sites:
        if e_probe.sites[key].codes:
            assert torch.equal(l_probe.site_codes(key), e_probe.site_codes(key)), key
        assert torch.equal(torch.cat(l_probe.sites[key].clipped), torch.cat(e_probe.sites[key].clipped)), key
    assert l_probe.activity().equals(e_probe.activity())


def test_loihi2_hardware_is_reported_unavailable_with_the_reason():
    status = status_of("loihi2")
    assert not status.available
    assert "lava-loihi" in status.reason and "not on PyPI" in status.reason
    assert status_of("lava").available
