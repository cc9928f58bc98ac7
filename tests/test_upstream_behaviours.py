"""Where the released code (ridgerchu/matmulfreellm with Hugging Face `generate`) behaves in a way users
rely on: generation ends at the checkpoint's EOS, Hugging Face bookkeeping keys in config.json are
accepted, configurations upstream cannot run are refused at load, and broken sharded or mismatched
checkpoints are blamed on the right file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from inspector.backends.emulator import Emulator
from inspector.cli import main as cli_main
from inspector.errors import CheckpointError
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.config import HGRNBitConfig
from inspector.lm.generate import SamplingSettings, generate, stopped_at_eos
from tests.make_released_fixture import released_config, write_released_checkpoint

PROMPT = "To be, or not"
GREEDY = dict(temperature=0.0, top_k=0, seed=0)


def _first_new_token(ids: list[int], start: int = 2) -> tuple[int, int]:
    """A position (from `start`) whose token did not occur before it, and that token: as EOS it ends the run there."""
    for position in range(start, len(ids)):
        if ids[position] not in ids[:position]:
            return position, ids[position]
    pytest.skip("the greedy continuation repeats one token; no position to end at")


def _set_generation_eos(directory, eos: int) -> None:
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": eos}))


def test_float_generation_stops_at_eos_unless_asked_to_go_on(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    free = [t.token_id for t in generate(loaded.model, loaded.tokenizer, PROMPT, 12, **GREEDY)]
    position, eos = _first_new_token(free)
    _set_generation_eos(tiny_checkpoint, eos)
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.eos_token_ids == (eos,)  # generation_config.json wins over config.json's eos_token_id
    stopped = list(generate(loaded.model, loaded.tokenizer, PROMPT, 12, **GREEDY, eos_token_ids=loaded.eos_token_ids))
    assert [t.token_id for t in stopped] == free[: position + 1]  # the EOS is the last token, as Hugging Face keeps it
    assert stopped_at_eos(stopped) and stopped[-1].text == "" and not any(t.is_eos for t in stopped[:-1])
    going_on = list(
        generate(loaded.model, loaded.tokenizer, PROMPT, 12, **GREEDY, ignore_eos=True, eos_token_ids=loaded.eos_token_ids)
    )
    assert [t.token_id for t in going_on] == free and not stopped_at_eos(going_on)


def test_integer_generation_stops_at_eos_unless_asked_to_go_on(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    emulator = Emulator(loaded)
    run, stream = emulator.generate(PROMPT, SamplingSettings(12, **GREEDY), probes=False)
    free = [t.token_id for t in stream]
    position, eos = _first_new_token(free)
    _set_generation_eos(tiny_checkpoint, eos)
    emulator = Emulator(load_checkpoint(tiny_checkpoint))
    run, stream = emulator.generate(PROMPT, SamplingSettings(12, **GREEDY), probes=True)
    list(stream)
    assert [t.token_id for t in run.tokens] == free[: position + 1] and stopped_at_eos(run.tokens)
    assert run.probe.tokens() == len(run.prompt_ids) + position  # the EOS is never fed back: nothing computed after it
    run, stream = emulator.generate(PROMPT, SamplingSettings(12, **GREEDY, ignore_eos=True), probes=False)
    assert [t.token_id for t in stream] == free


def test_config_eos_applies_without_generation_config(tiny_checkpoint):
    loaded = load_checkpoint(tiny_checkpoint)
    free = [t.token_id for t in generate(loaded.model, loaded.tokenizer, PROMPT, 12, **GREEDY)]
    position, eos = _first_new_token(free)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    config["eos_token_id"] = eos
    (tiny_checkpoint / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(tiny_checkpoint)
    assert loaded.eos_token_ids == (eos,)
    stopped = list(generate(loaded.model, loaded.tokenizer, PROMPT, 12, **GREEDY, eos_token_ids=loaded.eos_token_ids))
    assert len(stopped) == position + 1


@pytest.mark.parametrize("value", ["2", [], [1, 99999], True])
def test_a_bad_generation_config_eos_is_refused_by_name(tiny_checkpoint, value):
    (tiny_checkpoint / "generation_config.json").write_text(json.dumps({"eos_token_id": value}))
    with pytest.raises(CheckpointError, match=r"generation_config.json \[eos_token_id\]"):
        load_checkpoint(tiny_checkpoint)


def test_cli_says_it_stopped_at_eos_and_ignore_eos_goes_on(tiny_checkpoint, tmp_path, capsys):
    loaded = load_checkpoint(tiny_checkpoint)
    emulator = Emulator(loaded)
    _, stream = emulator.generate(PROMPT, SamplingSettings(10, **GREEDY), probes=False)
    position, eos = _first_new_token([t.token_id for t in stream])
    _set_generation_eos(tiny_checkpoint, eos)
    argv = ["run", "--model", str(tiny_checkpoint), "--prompt", PROMPT, "--tokens", "10", "--temperature", "0", "--top-k", "0"]
    assert cli_main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "generation stopped at end-of-sequence" in err and f"id {eos}) after {position + 1} of 10 tokens" in err
    meta = json.loads((tmp_path / "a" / "run.json").read_text())
    assert meta["stopped_at_eos"] is True and meta["sampling"]["ignore_eos"] is False
    assert cli_main([*argv, "--out", str(tmp_path / "b"), "--ignore-eos"]) == 0
    assert "end-of-sequence" not in capsys.readouterr().err
    meta = json.loads((tmp_path / "b" / "run.json").read_text())
    assert meta["stopped_at_eos"] is False and meta["sampling"]["ignore_eos"] is True



def test_cli_diff_says_the_continuation_stopped_at_eos(tiny_checkpoint, capsys):
    """`diff` compares the prompt plus one model's continuation: a continuation cut at EOS is said, not silent."""
    loaded = load_checkpoint(tiny_checkpoint)
    free = [t.token_id for t in generate(loaded.model, loaded.tokenizer, PROMPT, 10, **GREEDY)]
    position, eos = _first_new_token(free)
    _set_generation_eos(tiny_checkpoint, eos)
    argv = ["diff", "--model", str(tiny_checkpoint), "--prompt", PROMPT, "--tokens", "10", "--temperature", "0", "--top-k", "0"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "the float model's generation stopped at end-of-sequence" in out and f"after {position + 1} of 10 tokens" in out
    assert cli_main([*argv, "--ignore-eos"]) == 0
    assert "end-of-sequence" not in capsys.readouterr().out

def test_app_stops_at_eos_says_so_and_the_checkbox_goes_on(tiny_checkpoint):
    from tests.test_app import _app, _open_local, _texts

    loaded = load_checkpoint(tiny_checkpoint)
    free = [t.token_id for t in generate(loaded.model, loaded.tokenizer, "The ", 8, 0.8, 40, 0)]
    position, eos = _first_new_token(free)
    _set_generation_eos(tiny_checkpoint, eos)
    at = _open_local(_app(), str(tiny_checkpoint), tokens=8)
    at.sidebar.text_area[0].input("The ").run()
    assert not at.exception, at.exception
    assert "float model's generation stopped at end-of-sequence" in _texts(at)
    at.sidebar.checkbox(key="ignore_eos").check().run()
    assert not at.exception, at.exception
    assert "float model's generation stopped at end-of-sequence" not in _texts(at)
    assert at.query_params.get("ignore_eos") in ("1", ["1"])


# Hugging Face bookkeeping keys: accepted, listed; unknown keys still refused.

HF_KEYS = {"_attn_implementation_autoset": True, "use_bfloat16": False, "tokenizer_class": "LlamaTokenizer",
           "transformers_version": "4.48.0", "architectures": ["HGRNBitModel"], "torch_dtype": "bfloat16",
           "_name_or_path": "ridger/MMfreeLM-370M", "pad_token_id": None, "output_past": True, "max_length": 20}


def _config(**changes) -> dict:
    return {"model_type": "hgrn_bit", "hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 100, **changes}


def test_hugging_face_bookkeeping_keys_are_accepted_and_listed():
    config = HGRNBitConfig.from_dict(_config(**HF_KEYS))
    assert config == HGRNBitConfig.from_dict(_config())
    assert HGRNBitConfig.ignored_keys(_config(**HF_KEYS)) == tuple(sorted(HF_KEYS))


def test_an_unknown_key_is_still_refused():
    with pytest.raises(CheckpointError, match=r"\[use_fancy_kernel\]: unknown config key"):
        HGRNBitConfig.from_dict(_config(use_fancy_kernel=True))


def test_cli_and_loader_list_the_ignored_keys(tiny_checkpoint, capsys):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    (tiny_checkpoint / "config.json").write_text(json.dumps({**config, **HF_KEYS}))
    assert set(HF_KEYS) <= set(load_checkpoint(tiny_checkpoint).ignored_config_keys)
    assert cli_main(["map", "--model", str(tiny_checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "note: config.json keys ignored" in err and "_attn_implementation_autoset" in err and "use_bfloat16" in err


def test_app_shows_the_ignored_keys(tiny_checkpoint):
    from tests.test_app import _app, _open_local

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    (tiny_checkpoint / "config.json").write_text(json.dumps({**config, **HF_KEYS}))
    at = _open_local(_app(), str(tiny_checkpoint))
    assert not at.exception, at.exception
    assert any("config.json keys ignored" in c.value and "tokenizer_class" in c.value for c in at.sidebar.caption)


# Refused at load, naming what to change.

def test_expand_ratio_with_lower_bound_is_refused_naming_both_keys():
    with pytest.raises(CheckpointError, match=r"\[expand_ratio\].*expand_ratio 2 with use_lower_bound true") as info:
        HGRNBitConfig.from_dict(_config(expand_ratio=2, use_lower_bound=True))
    assert "hidden_size (64)" in str(info.value) and "(128)" in str(info.value)
    assert HGRNBitConfig.from_dict(_config(expand_ratio=2, use_lower_bound=False)).mixer_size == 128


@pytest.fixture()
def sharded(tmp_path):
    return write_released_checkpoint(tmp_path / "sharded", sharded=True)


def _index(directory) -> dict:
    return json.loads((directory / "model.safetensors.index.json").read_text())


def test_a_tensor_missing_from_its_shard_names_the_index_and_that_shard(sharded):
    index = _index(sharded)
    key = "model.layers.1.mlp.down_proj.weight"
    shard = index["weight_map"][key]
    other = next(s for s in set(index["weight_map"].values()) if s != shard)
    tensors = load_file(str(sharded / shard))
    del tensors[key]
    save_file(tensors, str(sharded / shard), metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(sharded)
    message = str(info.value)
    assert f"{shard} [{key}]: missing tensor" in message and "model.safetensors.index.json" in message
    assert other not in message


def test_a_tensor_missing_from_the_index_names_the_index(sharded):
    index = _index(sharded)
    key = "model.layers.0.attn.g_proj.weight"
    shard = index["weight_map"].pop(key)
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    tensors = load_file(str(sharded / shard))
    del tensors[key]
    save_file(tensors, str(sharded / shard), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=rf"model.safetensors.index.json \[{key}\]: missing tensor: .* does not list it"):
        load_checkpoint(sharded)


@pytest.mark.parametrize("config_layers, weight_layers", [(3, 2), (1, 2)])
def test_a_layer_count_mismatch_says_both_counts(tmp_path, config_layers, weight_layers):
    directory = write_released_checkpoint(tmp_path / "ckpt")
    config = json.loads((directory / "config.json").read_text())
    assert config["num_hidden_layers"] == weight_layers
    config["num_hidden_layers"] = config_layers
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"config.json \[num_hidden_layers\]: config: {config_layers} layers, "
                       rf"weights: {weight_layers}"):
        load_checkpoint(directory)


def test_the_released_config_fixture_still_loads(tmp_path):
    """The released key set (with its bookkeeping keys) loads, and lists what it ignored."""
    directory = write_released_checkpoint(tmp_path / "ok")
    loaded = load_checkpoint(directory)
    assert loaded.eos_token_ids == (2,)
    assert set(loaded.ignored_config_keys) == set(released_config(10)) & {
        "_name_or_path", "auto_map", "fuse_cross_entropy", "torch_dtype", "transformers_version"}
    assert isinstance(loaded.model.lm_head.ternary.values, torch.Tensor)
