"""Shared fixtures: a tiny checkpoint written to disk in exactly the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspector.checkpoint import save_checkpoint
from inspector.config import HGRNBitConfig
from inspector.generate import encode_prompt, generate
from inspector.model import HGRNBitForCausalLM
from inspector.tokenizer import decode_continuation, train_bpe_tokenizer

REPO = Path(__file__).resolve().parents[1]

def generate_text(model, tokenizer, prompt: str, **settings) -> str:
    """The whole continuation as one string, decoded after the prompt."""
    ids = [step.token_id for step in generate(model, tokenizer, prompt, **settings)]
    return decode_continuation(tokenizer, encode_prompt(tokenizer, prompt), ids)


TINY_TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Once upon a time there was a little girl named Lily. She liked to play outside.\n"
) * 4


def tiny_config(**overrides) -> HGRNBitConfig:
    base = dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, hidden_ratio=4, intermediate_size=48)
    base.update(overrides)
    return HGRNBitConfig(**base)


def randomize(model: HGRNBitForCausalLM, seed: int = 0) -> HGRNBitForCausalLM:
    """Random weights everywhere, norms and lower bounds included, so no parameter is a silent no-op."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.3 * torch.randn(param.shape, generator=gen))
            else:
                param.copy_(torch.randn(param.shape, generator=gen) * (1.0 if "lower_bounds" in name else 0.2))
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_bpe_tokenizer(TINY_TEXT, vocab_size=300)


@pytest.fixture()
def tiny_checkpoint(tmp_path, tiny_tokenizer) -> Path:
    torch.manual_seed(0)
    model = randomize(HGRNBitForCausalLM(tiny_config(vocab_size=tiny_tokenizer.get_vocab_size())))
    return save_checkpoint(model, tiny_tokenizer, tmp_path / "tiny")


@pytest.fixture(autouse=True)
def isolated_activity_cache(tmp_path_factory, monkeypatch):
    """Tests never read or fill the user's cache of published-size measurements."""
    monkeypatch.setenv("LOIHI_INSPECTOR_CACHE", str(tmp_path_factory.mktemp("activity_cache")))
