"""Generation: deterministic per seed, recurrent (one step per token), and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

from inspector.errors import PromptError
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import MAX_PROMPT_TOKENS, generate
from tests.conftest import generate_text


@pytest.fixture()
def loaded(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


def test_same_seed_same_tokens(loaded):
    a = [t.token_id for t in generate(loaded.model, loaded.tokenizer, "To be", 20, 1.0, 0, seed=7)]
    b = [t.token_id for t in generate(loaded.model, loaded.tokenizer, "To be", 20, 1.0, 0, seed=7)]
    c = [t.token_id for t in generate(loaded.model, loaded.tokenizer, "To be", 20, 1.0, 0, seed=8)]
    assert a == b
    assert len(a) == 20
    assert a != c


def test_greedy_matches_argmax_of_full_forward(loaded):
    steps = list(generate(loaded.model, loaded.tokenizer, "Once upon", 8, temperature=0.0))
    prompt = loaded.tokenizer.encode("Once upon").ids
    ids = prompt + [s.token_id for s in steps]
    with torch.no_grad():
        logits, _ = loaded.model(torch.tensor([ids]))
    for k, step in enumerate(steps):
        expected = logits[0, len(prompt) - 1 + k]
        assert torch.allclose(step.logits, expected, atol=1e-5)
        assert step.token_id == int(expected.argmax())


def test_model_is_called_once_per_token(loaded):
    calls = []

    def counting(ids, state=None):
        calls.append(ids.shape[1])
        return loaded.model(ids, state)

    list(generate(counting, loaded.tokenizer, "To be, or", 5, temperature=0.0))
    prompt_len = len(loaded.tokenizer.encode("To be, or").ids)
    assert calls == [prompt_len] + [1] * 5


def test_pieces_concatenate_to_decoded_text(loaded):
    steps = list(generate(loaded.model, loaded.tokenizer, "Lily", 15, 1.0, 0, seed=3))
    assert "".join(s.text for s in steps) == loaded.tokenizer.decode([s.token_id for s in steps])


def test_top_k_one_is_greedy(loaded):
    greedy = generate_text(loaded.model, loaded.tokenizer, "The", max_new_tokens=10, temperature=0.0)
    topk1 = generate_text(loaded.model, loaded.tokenizer, "The", max_new_tokens=10, temperature=1.3, top_k=1, seed=5)
    assert greedy == topk1


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_empty_prompt(loaded, prompt):
    with pytest.raises(PromptError, match="empty"):
        list(generate(loaded.model, loaded.tokenizer, prompt, 5))


def test_huge_prompt(loaded):
    with pytest.raises(PromptError, match=str(MAX_PROMPT_TOKENS)):
        list(generate(loaded.model, loaded.tokenizer, "to be or not " * 3000, 5))


@pytest.mark.parametrize("kwargs", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"top_k": -2}])
def test_bad_settings(loaded, kwargs):
    settings = {"max_new_tokens": 5, "temperature": 1.0, "top_k": 0} | kwargs
    with pytest.raises(PromptError):
        list(generate(loaded.model, loaded.tokenizer, "To be", **settings))
