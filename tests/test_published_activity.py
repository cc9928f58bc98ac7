"""Published sizes measured one layer at a time: bit for bit the whole-model emulator, cached on disk.

Only tiny configurations run here; the published ones are measured by `python -m inspector measure`.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.backends.emulator import Emulator
from inspector.chip.activity import core_activity
from inspector.chip.activity_cache import published_activity
from inspector.chip.costs import OpCosts
from inspector.chip.limits import HardwareConfig
from inspector.chip.published import MeasuredActivity, MeasurementError, measure_layerwise, random_block
from inspector.chip.report import evaluate, matching_published
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.config import PUBLISHED_CONFIGS, HGRNBitConfig
from inspector.lm.tokenizer import encode
from inspector.quant.calibrate import default_calibration_text
from inspector.quant.config import QuantConfig

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 300, "intermediate_size": 48}


def test_layerwise_run_is_the_emulator_bit_for_bit(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    qc = QuantConfig(calibration_tokens=300)
    emulator = Emulator(loaded, qc)
    ids = list(range(3, 23))
    _, probe = emulator.teacher_forced(ids, record_tensors=False)
    model = loaded.model.model
    calibration_ids = encode(loaded.tokenizer, default_calibration_text())[: qc.calibration_tokens]
    progress = []
    groups, activity = measure_layerwise(
        loaded.config, qc, lambda k: model.layers[k], model.embeddings, model.layer_lower_bounds(), model.norm,
        calibration_ids, ids, lambda done, total, what: progress.append((done, total)),
    )
    measured = MeasuredActivity("tiny", "its own weights", groups, activity)
    core_map = measured.core_map(emulator.hardware)
    assert core_map.table.equals(emulator.core_map.table)
    assert core_activity(measured.activity, core_map).equals(probe.activity())
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)


def test_random_measurement_is_cached_and_keyed(monkeypatch, tmp_path):
    monkeypatch.setitem(PUBLISHED_CONFIGS, "tiny-0.1B", TINY)  # a dot in the name, like MMfreeLM-1.3B
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    qc = QuantConfig(calibration_tokens=64)
    assert published_activity("tiny-0.1B", qc, measure=False) is None
    calls = []
    first = published_activity("tiny-0.1B", qc, on_progress=lambda *a: calls.append(a), tokens=8)
    assert calls and first.tokens == 8 and "random weights" in first.weights
    assert first.meta["peak_rss_bytes"] > 0 and first.meta["calibration_tokens"] == 64
    again = published_activity("tiny-0.1B", qc, measure=False, tokens=8)
    assert again is not None and again.weights == first.weights
    for key, (messages, synops) in first.activity.items():
        assert np.array_equal(again.activity[key][0], messages) and np.array_equal(again.activity[key][1], synops)
    assert [g.synapses.tolist() for g in again.groups] == [g.synapses.tolist() for g in first.groups]
    # another QuantConfig is another measurement
    assert published_activity("tiny-0.1B", QuantConfig(calibration_tokens=64, act_bits=6), measure=False, tokens=8) is None
    files = sorted(p.name for p in (tmp_path / "activity").iterdir())
    assert len(files) == 2 and all(f.startswith("tiny-0.1B-") for f in files)  # the key survives the dot in the name
    assert files[0].endswith(".json") and files[1].endswith(".npz")
    # and the cached activity drives a real estimate, with activity where there should be some
    result = evaluate("tiny-0.1B", again.weights, again.groups, again.activity, HardwareConfig(), False, OpCosts(), 500)
    assert result.estimate.generation.synops_mj > 0 and result.core_map.cores > 0


def test_random_block_follows_the_reference_initialization():
    import torch

    config = HGRNBitConfig(**TINY)
    block = random_block(config, 1, torch.Generator().manual_seed(0))
    again = random_block(config, 1, torch.Generator().manual_seed(0))
    assert torch.equal(block.mlp.gate_proj.weight, again.mlp.gate_proj.weight)
    assert float(block.mlp.gate_proj.weight.detach().std()) == pytest.approx(config.initializer_range, rel=0.2)
    # scaled by 1/sqrt(2L)
    assert float(block.attn.o_proj.weight.detach().abs().max()) < float(block.attn.i_proj.weight.detach().abs().max())


def test_unknown_published_name_and_bad_settings(monkeypatch, tmp_path):
    with pytest.raises(MeasurementError, match="no published configuration"):
        published_activity("MMfreeLM-7B", measure=False)
    monkeypatch.setitem(PUBLISHED_CONFIGS, "tiny", TINY)
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    with pytest.raises(MeasurementError, match="must not exceed"):
        published_activity("tiny", QuantConfig(calibration_tokens=16), tokens=32)


def test_matching_published():
    assert matching_published(HGRNBitConfig(**PUBLISHED_CONFIGS["MMfreeLM-370M"])) == "MMfreeLM-370M"
    assert matching_published(HGRNBitConfig(**TINY)) is None


def test_measure_command_fills_the_cache(monkeypatch, tmp_path, capsys):
    from inspector.cli import main

    monkeypatch.setitem(PUBLISHED_CONFIGS, "tiny", TINY)
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path))
    assert main(["measure", "--config", "tiny", "--quant", "calibration_tokens=64"]) == 0
    out = capsys.readouterr().out
    assert "tiny: random weights" in out and "peak RSS" in out
    cached = published_activity("tiny", QuantConfig(calibration_tokens=64), measure=False)  # from the disk cache
    assert cached is not None and set(range(TINY["num_hidden_layers"])) <= {layer for layer, _ in cached.activity}  # every block
    assert main(["measure", "--config", "tiny", "--quant", "calibration_tokens=64"]) == 0
    assert "(was cached)" in capsys.readouterr().out
