"""The calibration cache: a second run loads it and computes the same bits; any change to what calibration
reads (a weight byte, a QuantConfig field it depends on) recomputes; a corrupt entry is ignored and rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inspector.backends.emulator import Emulator
from inspector.cli import main as cli_main
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.weight_digest import WeightDigest
from inspector.quant import calibrate as calibrate_module
from inspector.quant.calibration_cache import CALIBRATION_FIELDS, cache_root
from inspector.quant.config import QuantConfig

PROMPT = "To be, or not"
QC = QuantConfig(calibration_tokens=64)


@pytest.fixture()
def counted(monkeypatch):
    """How many times calibration really ran."""
    calls = []
    real = calibrate_module.calibrate

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(calibrate_module, "calibrate", counting)
    return calls


def _integers(emulator: Emulator) -> tuple:
    """Every integer the model is made of, and the logits of a teacher-forced pass."""
    params = emulator.params
    logits, probe = emulator.teacher_forced(emulator.loaded.tokenizer.encode(PROMPT).ids)
    return emulator.calibration, repr(params), logits


def test_a_second_run_loads_the_cache_and_computes_the_same_bits(tiny_checkpoint, counted):
    first = Emulator(load_checkpoint(tiny_checkpoint), QC)
    second = Emulator(load_checkpoint(tiny_checkpoint), QC)
    assert len(counted) == 1 and not first.calibration_cached and second.calibration_cached
    assert second.calibration_status == "calibration loaded from cache"
    a, b = _integers(first), _integers(second)
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert [f.name for f in cache_root().iterdir()] == [next(cache_root().iterdir()).name]  # one entry, no temp files


def test_a_changed_weight_byte_recomputes(tiny_checkpoint, counted):
    Emulator(load_checkpoint(tiny_checkpoint), QC)
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    value = tensors["model.layers.1.attn.g_norm.weight"]
    value.view(torch.int32)[3] ^= 1  # one bit of one float: same header, same file size
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    again = Emulator(load_checkpoint(tiny_checkpoint), QC)
    assert len(counted) == 2 and not again.calibration_cached


@pytest.mark.parametrize("field", CALIBRATION_FIELDS)
def test_a_changed_field_that_calibration_reads_recomputes(tiny_checkpoint, counted, field):
    Emulator(load_checkpoint(tiny_checkpoint), QC)
    changed = QC.with_overrides({field: getattr(QC, field) + 16})
    again = Emulator(load_checkpoint(tiny_checkpoint), changed)
    assert len(counted) == 2 and not again.calibration_cached


def test_a_field_calibration_does_not_read_reuses_it_with_the_same_bits(tiny_checkpoint, counted):
    Emulator(load_checkpoint(tiny_checkpoint), QC)
    other = QC.with_overrides({"act_bits": 6, "state_headroom": 4.0})
    cached = Emulator(load_checkpoint(tiny_checkpoint), other)
    assert len(counted) == 1 and cached.calibration_cached
    cache_root_dir = cache_root()
    for entry in cache_root_dir.iterdir():
        entry.unlink()
    fresh = Emulator(load_checkpoint(tiny_checkpoint), other)
    assert len(counted) == 2
    a, b = _integers(cached), _integers(fresh)
    assert a[1] == b[1] and torch.equal(a[2], b[2])


def test_a_different_calibration_text_recomputes(tiny_checkpoint, counted):
    loaded = load_checkpoint(tiny_checkpoint)
    Emulator(loaded, QC)
    Emulator(loaded, QC, calibration_text="Once upon a time there was a little girl named Lily. " * 20)
    assert len(counted) == 2


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"spec": {}, "maxima": {}}', b"\x00\xff" * 10])
def test_a_corrupt_cache_file_is_ignored_with_a_note_and_rewritten(tiny_checkpoint, counted, content):
    first = Emulator(load_checkpoint(tiny_checkpoint), QC)
    (entry,) = cache_root().iterdir()
    good = json.loads(entry.read_text())
    entry.write_bytes(content)
    second = Emulator(load_checkpoint(tiny_checkpoint), QC)
    assert len(counted) == 2 and not second.calibration_cached
    assert any("corrupt" in note and str(entry) in note for note in second.calibration_notes)
    assert second.calibration == first.calibration
    assert json.loads(entry.read_text()) == good  # written again, whole


def test_a_tampered_maximum_is_refused(tiny_checkpoint, counted):
    Emulator(load_checkpoint(tiny_checkpoint), QC)
    (entry,) = cache_root().iterdir()
    record = json.loads(entry.read_text())
    record["maxima"][next(iter(record["maxima"]))] = float("nan")
    entry.write_text(json.dumps(record))
    again = Emulator(load_checkpoint(tiny_checkpoint), QC)
    assert len(counted) == 2 and again.calibration_notes


def test_the_weight_digest_reads_every_byte(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"\x01" * (3 * 2**20 + 5))
    before = WeightDigest([path]).hexdigest()
    data = bytearray(path.read_bytes())
    data[2 * 2**20 + 7] ^= 0x10
    path.write_bytes(bytes(data))
    assert WeightDigest([path]).hexdigest() != before
    assert WeightDigest([Path(tmp_path / "missing")]).hexdigest() is None


def test_cli_says_calibration_loaded_from_cache(tiny_checkpoint, tmp_path, capsys):
    argv = ["run", "--model", str(tiny_checkpoint), "--prompt", PROMPT, "--tokens", "3", "--quant", "calibration_tokens=64"]
    assert cli_main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert "calibration loaded from cache" not in capsys.readouterr().err
    assert cli_main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "calibration loaded from cache" in capsys.readouterr().err
    import polars as pl

    for table in ("saturation", "states", "activity", "tensors"):
        assert pl.read_parquet(tmp_path / "a" / f"{table}.parquet").equals(pl.read_parquet(tmp_path / "b" / f"{table}.parquet"))


def test_a_weight_digest_pickles_with_its_finished_value(tmp_path):
    """A sweep sends the LoadedModel (and so its digest) to Ray workers: the copy holds the same digest."""
    import pickle

    from inspector.lm.weight_digest import WeightDigest

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x01\x02" * 1000)
    digest = WeightDigest([weights])
    copy = pickle.loads(pickle.dumps(digest))
    assert copy.hexdigest() == digest.hexdigest() and len(copy.hexdigest()) == 64


def test_weights_read_through_fresh_mappings_are_the_same(tiny_checkpoint, monkeypatch):
    """The loader maps a safetensors file afresh every REMAP_BYTES (to bound the resident size); same tensors."""
    from inspector.lm.checkpoint import WeightSource

    reference = load_checkpoint(tiny_checkpoint).model
    monkeypatch.setattr(WeightSource, "REMAP_BYTES", 1000)
    remapped = load_checkpoint(tiny_checkpoint).model
    whole = reference.state_dict()
    assert all(torch.equal(whole[k], v) for k, v in remapped.state_dict().items())
    for (_, a), (_, b) in zip(reference.bitlinears(), remapped.bitlinears(), strict=True):
        assert torch.equal(a.ternary.values, b.ternary.values) and a.ternary.beta == b.ternary.beta


def test_a_sweep_calibrates_through_the_cache_with_the_same_bits(tiny_checkpoint, counted):
    """The sweep's evaluator reads and fills the same cache as the CLI: a model opened before is not
    calibrated again, and a sweep's maxima are those of a direct calibration."""
    from inspector.sweep.evaluate import Evaluator, SweepSpec

    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer"
    loaded = load_checkpoint(tiny_checkpoint)
    direct = calibrate_module.calibrate(loaded.model, loaded.tokenizer, text, 64)
    emulator = Emulator(loaded, QC, calibration_text=text)
    assert len(counted) == 2 and not emulator.calibration_cached
    spec = SweepSpec(loaded, [1, 2, 3], 3, QuantConfig(), calibration_text=text)
    assert Evaluator(spec).calibration(64) == direct == emulator.calibration
    assert len(counted) == 2  # loaded from the cache the emulator wrote
    Evaluator(spec).calibration(32)
    Evaluator(SweepSpec(load_checkpoint(tiny_checkpoint), [1, 2, 3], 3, QuantConfig(), calibration_text=text)).calibration(32)
    assert len(counted) == 3  # a new token count once, then from the cache


def test_observed_peaks_are_the_plain_abs_max():
    """`observe` takes max|x| as the larger of -min and max: the bits of `x.abs().max()`, NaN and infinities included."""
    from inspector.quant.calibrate import _abs_max, observe

    g = torch.Generator().manual_seed(0)
    specials = [[float("nan"), 1.0], [-float("inf"), 1.0], [0.0, -0.0], [-0.0], [-3.0, 2.0], [2.0, -2.0]]
    for dtype in (torch.float64, torch.float32):
        cases = [torch.tensor(v, dtype=dtype) for v in specials]
        scales = [10.0 ** int(e) for e in torch.randint(-30, 30, (50,), generator=g)]
        cases += [torch.randn(9, 33, generator=g, dtype=dtype) * scale for scale in scales]
        for value in cases:
            got, want = _abs_max(value), value.abs().max()
            assert got.dtype == want.dtype and (bool(got.isnan()) and bool(want.isnan()) or float(got) == float(want))
            a, b = {}, {}
            observe(a, "site", value)
            b["site"] = max(0.0, float(np.float32(float(want))))
            assert str(a) == str(b)
