"""Checkpoint round trips and the specific errors for every kind of broken checkpoint directory."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inspector.errors import CheckpointError, TokenizerError
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.ternary import ternarize


def test_round_trip_same_logits_and_tokenizer(tiny_checkpoint, tiny_tokenizer):
    loaded = load_checkpoint(tiny_checkpoint)
    again = load_checkpoint(tiny_checkpoint)
    ids = torch.tensor([tiny_tokenizer.encode("To be, or not").ids])
    with torch.no_grad():
        a, _ = loaded.model(ids)
        b, _ = again.model(ids)
    assert torch.equal(a, b)
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    _assert_holds(loaded.model, tensors)
    assert loaded.tokenizer.encode("Lily liked").ids == tiny_tokenizer.encode("Lily liked").ids
    assert loaded.config.num_hidden_layers == 2


def test_sharded_safetensors_with_index(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    keys = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :],
    }
    weight_map = {}
    for shard, shard_keys in shards.items():
        save_file({k: tensors[k] for k in shard_keys}, str(tiny_checkpoint / shard))
        weight_map.update({k: shard for k in shard_keys})
    (tiny_checkpoint / "model.safetensors").unlink()
    (tiny_checkpoint / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    loaded = load_checkpoint(tiny_checkpoint)
    _assert_holds(loaded.model, tensors)


def _assert_holds(model, tensors):
    """Float tensors as stored; every BitLinear weight as its ternary matrix (the frozen model's only copy)."""
    for key, value in model.state_dict().items():
        assert torch.equal(tensors[key], value), key
    bitlinears = model.bitlinears()
    assert len(bitlinears) == 6 * model.config.num_hidden_layers + 1
    for name, module in bitlinears:
        ternary, beta = ternarize(tensors[name + ".weight"])
        assert torch.equal(module.ternary.values, ternary) and module.ternary.beta == beta, name
        assert module.weight is None  # no float copy kept


def test_torch_bin_is_read_with_weights_only(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    (tiny_checkpoint / "model.safetensors").unlink()
    torch.save(tensors, tiny_checkpoint / "pytorch_model.bin")
    assert load_checkpoint(tiny_checkpoint).config.hidden_size == 32


def test_pickled_code_is_refused(tiny_checkpoint):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tiny_checkpoint / "model.safetensors").unlink()
    torch.save({"x": Evil()}, tiny_checkpoint / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(tiny_checkpoint)
    assert "weights_only=False" not in str(info.value)  # never pass on PyTorch's advice to unpickle code


def test_unexpandable_home_directory_is_refused():
    _expect("~nosuchuser/models", "~nosuchuser", "no user 'nosuchuser'")


def test_overlong_path_is_refused(tmp_path):
    message = _expect("/" + "a" * 4999, "path too long")
    assert len(message) < 300  # the path is shortened in the message, not quoted in full
    _expect(str(tmp_path / ("b" * 300)), "longer than 255 characters")


def test_file_instead_of_directory(tiny_checkpoint):
    _expect(tiny_checkpoint / "config.json", "not a directory", "a file is at this path")


def test_model_roots_restrict_checkpoint_paths(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tmp_path / "elsewhere"))
    _expect(tiny_checkpoint, "outside the allowed model directories", "INSPECTOR_MODEL_ROOTS")
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tiny_checkpoint.parent))
    assert load_checkpoint(tiny_checkpoint).config.hidden_size == 32


def test_shared_server_without_roots_accepts_no_paths(tiny_checkpoint, monkeypatch):
    from inspector.lm.paths import checkpoint_directory

    monkeypatch.delenv("INSPECTOR_MODEL_ROOTS", raising=False)
    with pytest.raises(CheckpointError, match="this server is shared"):
        checkpoint_directory(str(tiny_checkpoint), shared=True)


def _expect(directory, *fragments):
    with pytest.raises((CheckpointError, TokenizerError)) as info:
        load_checkpoint(directory)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_directory(tmp_path):
    _expect(tmp_path / "nope", "not a directory")


def test_missing_config(tiny_checkpoint):
    (tiny_checkpoint / "config.json").unlink()
    _expect(tiny_checkpoint, "config.json", "file not found")


def test_config_not_json(tiny_checkpoint):
    (tiny_checkpoint / "config.json").write_text("{not json")
    _expect(tiny_checkpoint, "config.json", "not valid JSON")


def test_unknown_model_type(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["model_type"] = "llama"
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    _expect(tiny_checkpoint, "config.json", "[model_type]", "'llama'")


def test_unknown_config_key(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["rope_theta"] = 10000
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    _expect(tiny_checkpoint, "[rope_theta]", "unknown config key")


def test_hf_bookkeeping_keys_are_accepted(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg.update({"torch_dtype": "bfloat16", "transformers_version": "4.40.2", "fuse_cross_entropy": True})
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    assert load_checkpoint(tiny_checkpoint).config.vocab_size == cfg["vocab_size"]


def test_bad_config_value(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["hidden_act"] = "gelu"
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    _expect(tiny_checkpoint, "[hidden_act]", "gelu")


def test_missing_weights(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").unlink()
    _expect(tiny_checkpoint, "model.safetensors", "no weights found")


def test_corrupt_safetensors(tiny_checkpoint):
    data = (tiny_checkpoint / "model.safetensors").read_bytes()
    (tiny_checkpoint / "model.safetensors").write_bytes(data[:100])
    _expect(tiny_checkpoint, "model.safetensors", "not a valid safetensors file")


def test_garbage_safetensors(tiny_checkpoint):
    (tiny_checkpoint / "model.safetensors").write_bytes(b"\x00" * 64)
    _expect(tiny_checkpoint, "model.safetensors", "not a valid safetensors file")


def test_wrong_shape_names_the_key(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["model.layers.1.attn.f_proj.weight"] = torch.zeros(5, 7)
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    _expect(tiny_checkpoint, "[model.layers.1.attn.f_proj.weight]", "(5, 7)", "(32, 32)")


def test_missing_tensor_names_the_key(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    del tensors["lm_head.norm.weight"]
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    _expect(tiny_checkpoint, "[lm_head.norm.weight]", "missing tensor")


def test_unexpected_tensor_names_the_key(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["model.layers.7.attn.i_proj.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    _expect(tiny_checkpoint, "[model.layers.7.attn.i_proj.weight]", "unexpected tensor")


def test_nan_weights_are_rejected(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["model.norm.weight"][0] = float("nan")
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    _expect(tiny_checkpoint, "[model.norm.weight]", "NaN")


def test_missing_tokenizer(tiny_checkpoint):
    (tiny_checkpoint / "tokenizer.json").unlink()
    _expect(tiny_checkpoint, "tokenizer.json", "file not found")


def test_corrupt_sentencepiece_model_is_refused(tiny_checkpoint):
    (tiny_checkpoint / "tokenizer.json").unlink()
    (tiny_checkpoint / "tokenizer.model").write_bytes(b"\x0a\x0b")
    _expect(tiny_checkpoint, "tokenizer.model", "not a sentencepiece model")


def test_malformed_tokenizer(tiny_checkpoint):
    (tiny_checkpoint / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    _expect(tiny_checkpoint, "tokenizer.json", "tokenizers")


def test_missing_shard(tiny_checkpoint):
    shutil.move(tiny_checkpoint / "model.safetensors", tiny_checkpoint / "model-00001-of-00001.safetensors")
    keys = load_file(str(tiny_checkpoint / "model-00001-of-00001.safetensors")).keys()
    index = {"weight_map": {k: "model-00001-of-00002.safetensors" for k in keys}}
    (tiny_checkpoint / "model.safetensors.index.json").write_text(json.dumps(index))
    _expect(tiny_checkpoint, "model-00001-of-00002.safetensors", "missing")


def test_config_claiming_a_huge_model_is_refused_before_anything_is_built(tiny_checkpoint):
    """hidden_size 100000 beside a tiny safetensors file: refused on the first mismatching tensor (as the README
    says), from the headers; a config whose weights match but do not fit is refused on memory, naming the sizes."""
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["hidden_size"] = 100_000
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    from inspector.lm.config import read_config
    from inspector.lm.memory import MemoryBudgetError, check_model_fits

    _expect(tiny_checkpoint, "does not match the config's", "100000")
    with pytest.raises(MemoryBudgetError, match="GB is available"):
        check_model_fits(read_config(tiny_checkpoint / "config.json"), "config.json")


def test_shapes_are_checked_from_the_header_before_any_tensor_is_read(tiny_checkpoint, monkeypatch):
    from inspector.lm import checkpoint

    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["lm_head.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    monkeypatch.setattr(checkpoint.WeightSource, "get", lambda self, key: pytest.fail(f"read {key} before checking"))
    _expect(tiny_checkpoint, "[lm_head.weight]", "(3, 3)")


def test_loading_reports_progress_per_tensor(tiny_checkpoint):
    seen = []
    load_checkpoint(tiny_checkpoint, on_progress=lambda done, total, key: seen.append((done, total, key)))
    assert seen[-1][0] == seen[-1][1] == len(seen) and "lm_head.weight" in {k for _, _, k in seen}


def test_memory_footprint_counts_every_parameter(tiny_checkpoint):
    from inspector.lm.memory import model_footprint

    loaded = load_checkpoint(tiny_checkpoint)
    footprint = model_footprint(loaded.config)
    assert footprint.parameters == loaded.model.num_parameters()
    assert footprint.ternary_weights == sum(m.ternary.values.numel() for _, m in loaded.model.bitlinears())


@pytest.mark.parametrize("model", ["~nosuchuser/models", "/" + "a" * 4999])
def test_cli_refuses_bad_paths_with_one_line(model, capsys):
    from inspector.cli import main

    assert main(["map", "--model", model]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_sample_models_load_whatever_the_roots(tmp_path, monkeypatch):
    from inspector.lm.catalog import sample_models

    samples = sample_models()
    if not samples:
        pytest.skip("no sample model trained yet")
    monkeypatch.setenv("INSPECTOR_MODEL_ROOTS", str(tmp_path))
    assert load_checkpoint(next(iter(samples.values()))).config.vocab_size > 0


def test_peak_resident_memory_of_a_child_is_its_own_not_its_parents():
    """ru_maxrss survives fork + exec (a child would report its parent's size); VmHWM does not."""
    import subprocess
    import sys

    from inspector.lm.memory import peak_resident_bytes

    ballast = bytearray(700 * 1024**2)  # touched: resident in this (parent) process
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    parent = peak_resident_bytes()
    child = int(subprocess.run(
        [sys.executable, "-c", "from inspector.lm.memory import peak_resident_bytes; print(peak_resident_bytes())"],
        capture_output=True, text=True, check=True,
    ).stdout)
    del ballast
    assert parent >= 700 * 1024**2
    assert child < parent - 500 * 1024**2


def test_nan_in_a_bitlinear_weight_is_rejected(tiny_checkpoint):
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["model.layers.1.attn.f_proj.weight"][2, 3] = float("inf")
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    _expect(tiny_checkpoint, "[model.layers.1.attn.f_proj.weight]", "NaN or infinite")


def test_latent_histogram_is_counted_when_asked_from_the_file(tiny_checkpoint):
    from inspector.lm.ternary import latent_histogram

    loaded = load_checkpoint(tiny_checkpoint)
    matrix = loaded.model.model.layers[0].attn.f_proj.ternary
    assert matrix._histogram is None  # nothing counted at load
    weight = load_file(str(tiny_checkpoint / "model.safetensors"))["model.layers.0.attn.f_proj.weight"]
    assert torch.equal(matrix.latent_histogram, latent_histogram(weight, matrix.beta))
    other = load_checkpoint(tiny_checkpoint).model.model.layers[0].attn.f_proj.ternary
    tensors = load_file(str(tiny_checkpoint / "model.safetensors"))
    tensors["model.layers.0.attn.f_proj.weight"] *= -1
    save_file(tensors, str(tiny_checkpoint / "model.safetensors"))
    with pytest.raises(ValueError, match="changed since the model was loaded"):
        _ = other.latent_histogram


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_finiteness_check_is_isfinite_all(dtype):
    """The one-reduction check of non-BitLinear tensors says what `torch.isfinite(t).all()` says, for a NaN or an
    infinity anywhere (vector tails included), an all-NaN tensor, and an empty one."""
    from inspector.lm.checkpoint import _all_finite

    g = torch.Generator().manual_seed(0)
    for shape in [(1,), (7,), (33, 65), (0,), (3, 0)]:
        base = torch.randn(*shape, generator=g).to(dtype)
        assert _all_finite(base) == bool(torch.isfinite(base).all())
        for position in range(base.numel()):
            for bad in (float("nan"), float("inf"), -float("inf")):
                value = base.clone()
                value.view(-1)[position] = bad
                assert not _all_finite(value)
    assert not _all_finite(torch.full((4, 9), float("nan"), dtype=dtype))
