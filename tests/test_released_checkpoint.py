"""Real MMfreeLM checkpoints compute exactly as the released code does.

A random-weight checkpoint in the released layout (tests/make_released_fixture.py) is loaded the way a
user loads a downloaded one, and its float logits are compared with a float64 port of the upstream
forward (tests/upstream_reference.py) that shares nothing with `inspector.lm.model`.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from inspector.backends.emulator import Emulator
from inspector.compare.traces import run_tables
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import encode_prompt, generate
from inspector.lm.tokenizer import decode, decode_continuation, encode, special_token_ids, token_texts
from tests import upstream_reference
from tests.make_released_fixture import write_released_checkpoint

TOKENS = [1, 300, 17, 5, 258, 44, 44, 9, 400, 2, 77]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return write_released_checkpoint(tmp_path_factory.mktemp("released") / "MMfreeLM-fixture")


@pytest.fixture(scope="module")
def released_sharded(tmp_path_factory):
    return write_released_checkpoint(tmp_path_factory.mktemp("sharded") / "MMfreeLM-fixture", sharded=True)


def uses_bos(tokenizer) -> bool:
    """Whether `encode_document` puts a special token in front of the text."""
    probe = tokenizer.encode("a", add_special_tokens=True).ids
    return bool(probe) and probe[0] in special_token_ids(tokenizer)


def _upstream(directory, tokens):
    config = json.loads((directory / "config.json").read_text())
    return upstream_reference.upstream_logits(load_file(str(directory / "model.safetensors")), config, tokens)


def _ours(directory, tokens):
    model = load_checkpoint(directory).model.double()
    with torch.no_grad():
        return model(torch.tensor([tokens]))[0][0]


def test_float_logits_equal_upstream_in_float64(released):
    expected = _upstream(released, TOKENS)
    got = _ours(released, TOKENS)
    assert (got - expected).abs().max().item() < 1e-9


def test_sharded_copy_loads_the_same_weights(released, released_sharded):
    one, sharded = load_checkpoint(released).model, load_checkpoint(released_sharded).model
    a, b = one.state_dict(), sharded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for (name, x), (_, y) in zip(one.bitlinears(), sharded.bitlinears(), strict=True):
        assert torch.equal(x.ternary.values, y.ternary.values) and x.ternary.beta == y.ternary.beta, name
    assert (_ours(released_sharded, TOKENS) - _upstream(released, TOKENS)).abs().max().item() < 1e-9


def test_the_fixture_can_tell_the_bitlinear_eps_apart(released, monkeypatch):
    """The eps 1e-8 of the unfused BitLinear moves these logits by far more than the test's tolerance."""
    fused = _upstream(released, TOKENS)
    monkeypatch.setattr(upstream_reference, "FUSED_EPS", 1e-8)
    unfused = _upstream(released, TOKENS)
    assert (fused - unfused).abs().max().item() > 1e-3 * fused.abs().max().item()


def test_rounding_is_half_away_from_zero():
    from inspector.lm.model import activation_quant_int, round_half_away

    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999999999999994, -0.49999999999999994], dtype=torch.float64)
    assert round_half_away(x).tolist() == [-3, -2, -1, 1, 2, 3, 0, 0]
    codes, _ = activation_quant_int(torch.tensor([[127.0, 0.5, -0.5, 1.5]]))
    assert codes.tolist() == [[127, 1, -1, 2]]


def test_prompts_start_with_bos_as_the_tokenizer_config_asks(released):
    loaded = load_checkpoint(released)
    ids = encode_prompt(loaded.tokenizer, "Hello the king")
    assert ids[0] == 1 and ids[1:] == encode(loaded.tokenizer, "Hello the king")
    assert uses_bos(loaded.tokenizer) and 1 in special_token_ids(loaded.tokenizer)


def test_no_bos_without_tokenizer_config(released, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(released, copy)
    (copy / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": False}))
    loaded = load_checkpoint(copy)
    assert encode_prompt(loaded.tokenizer, "Hello") == encode(loaded.tokenizer, "Hello")


def test_bos_disagreeing_with_config_is_refused(released, tmp_path):
    import shutil

    from inspector.errors import TokenizerError

    copy = tmp_path / "copy"
    shutil.copytree(released, copy)
    config = json.loads((copy / "config.json").read_text())
    config["bos_token_id"] = 5
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="bos_token"):
        load_checkpoint(copy)


def test_sample_models_use_no_bos():
    from inspector.lm.catalog import sample_models

    for directory in sample_models().values():
        loaded = load_checkpoint(directory)
        assert not uses_bos(loaded.tokenizer)
        assert loaded.card["uses_bos"] is False


def test_generated_text_keeps_the_leading_space(released):
    tokenizer = load_checkpoint(released).tokenizer
    context = encode_prompt(tokenizer, "Hello")
    continuation = encode(tokenizer, "Hello the king")[len(encode(tokenizer, "Hello")) :]
    assert decode(tokenizer, continuation) == "the king"  # decoded alone, the space is lost
    assert decode_continuation(tokenizer, context, continuation) == " the king"


@pytest.mark.parametrize("text", ["東京は日本の首都です。", "a 🙂🚀 b", "Ünïcödé and 안녕"])
def test_streamed_pieces_of_multibyte_text_never_show_replacement_chars(released, text):
    tokenizer = load_checkpoint(released).tokenizer
    ids = encode(tokenizer, text)
    assert any(tokenizer.id_to_token(i).startswith("<0x") for i in ids)  # byte fallback in use
    context = encode_prompt(tokenizer, "The answer:")
    pieces = [p for p in _stream(tokenizer, context, ids)]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == " " + text
    texts = token_texts(tokenizer, ids)
    assert "".join(texts) == text and all("\ufffd" not in t for t in texts)


def _stream(tokenizer, context, ids):
    from inspector.lm.tokenizer import IncrementalDecoder

    decoder = IncrementalDecoder(tokenizer, context)
    yield from (decoder.push(i) for i in ids)
    yield decoder.flush()


def test_generation_and_traces_on_the_released_layout(released):
    loaded = load_checkpoint(released)
    steps = list(generate(loaded.model, loaded.tokenizer, "Hello", max_new_tokens=12, temperature=0.0))
    ids = [s.token_id for s in steps]
    assert "".join(s.text for s in steps) == decode_continuation(loaded.tokenizer, encode_prompt(loaded.tokenizer, "Hello"), ids)
    emulator = Emulator(loaded)
    run, stream = emulator.generate("Hello", _greedy(4), probes=True)
    list(stream)
    assert run.prompt_ids[0] == 1
    tokens = run_tables(run, emulator)["tokens"]
    assert tokens["is_special"][0] and tokens["text"][0] == "<s>"
    assert not tokens["is_special"][1:].any()


def _greedy(n):
    from inspector.lm.generate import SamplingSettings

    return SamplingSettings(max_new_tokens=n, temperature=0.0)
