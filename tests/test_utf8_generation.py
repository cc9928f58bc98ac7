"""Generation whose output is multi-byte UTF-8 streams correctly, token by token, from both models.

The released-layout fixture's tokenizer was trained on ASCII, so CJK and emoji go through byte
fallback: one character is 2-4 byte tokens, and every token but the last of a character adds no
text. The model is the fixture with a planted next-token rule, so greedy generation is known to
emit those byte tokens: each byte token of the cycle below gets its own embedding direction (large,
so it dominates the random layers' contribution to the residual stream) and the LM head maps that
direction to the next byte of the cycle. The float model and the integer model (LM head on the
host) then both continue "A 東" with 🙂 é 東 🙂 é 東 ..., and the test checks what a viewer sees: the
streamed pieces joined equal the decoded continuation, and no piece shows a replacement character.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from inspector.backends.emulator import Emulator
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import SamplingSettings, encode_prompt, generate
from inspector.lm.tokenizer import decode_continuation
from inspector.quant.config import QuantConfig
from tests.make_released_fixture import write_released_checkpoint

PROMPT = "A 東"
CYCLE_TEXT = "🙂é東"  # 4 + 2 + 3 bytes, after the prompt's last byte (the last of 東)
CYCLE = [0xB1, *CYCLE_TEXT.encode()]  # each byte token is followed by the next: B1 -> F0 -> 9F ... 9D -> B1


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    directory = write_released_checkpoint(tmp_path_factory.mktemp("utf8") / "MMfreeLM-utf8")
    tokenizer = load_checkpoint(directory).tokenizer
    ids = [tokenizer.token_to_id(f"<0x{b:02X}>") for b in CYCLE]
    state = load_file(str(directory / "model.safetensors"))
    embeddings, head = state["model.embeddings.weight"].float(), torch.zeros_like(state["lm_head.weight"], dtype=torch.float32)
    for k, (token, following) in enumerate(zip(ids[:-1], ids[1:], strict=True)):
        embeddings[token] = 0
        embeddings[token, k] = 8.0
        head[following, k] = 1.0
    state["model.embeddings.weight"] = embeddings.to(torch.bfloat16)
    state["lm_head.weight"] = head.to(torch.bfloat16)
    for name in ("model.norm.weight", "lm_head.norm.weight"):  # positive gains keep the planted logit on top
        state[name] = torch.ones_like(state[name])
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return load_checkpoint(directory)


def _check_stream(loaded, pieces: list[str], token_ids: list[int]) -> None:
    tokenizer = loaded.tokenizer
    context = encode_prompt(tokenizer, PROMPT)
    assert tokenizer.id_to_token(context[-1]) == "<0xB1>"  # 東 went through byte fallback
    whole = decode_continuation(tokenizer, context, token_ids)
    assert whole == CYCLE_TEXT * 2  # the planted rule holds: the test generates what it means to
    assert "".join(pieces) == whole
    assert all("\ufffd" not in piece for piece in pieces)
    assert "" in pieces  # bytes inside a character add no text until the character is complete
    assert [p for p in pieces if p] == ["🙂", "é", "東"] * 2


def test_float_generation_streams_multibyte_characters(planted):
    steps = list(generate(planted.model, planted.tokenizer, PROMPT, max_new_tokens=18, temperature=0.0))
    _check_stream(planted, [s.text for s in steps], [s.token_id for s in steps])


def test_integer_generation_streams_multibyte_characters(planted):
    emulator = Emulator(planted, QuantConfig(calibration_tokens=256))
    run, stream = emulator.generate(PROMPT, SamplingSettings(18, 0.0, 0, 0), probes=False)
    pieces = [token.text for token in stream]
    assert pieces == [t.text for t in run.tokens]
    _check_stream(planted, pieces, [t.token_id for t in run.tokens])
