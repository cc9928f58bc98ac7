"""The shipped sample models: present, small, documented, loadable, and writing in their corpus' style."""

from __future__ import annotations

import json

import pytest

from inspector.catalog import SAMPLE_MODELS_DIR, sample_models
from inspector.checkpoint import load_checkpoint
from inspector.generate import generate_text

CARD_FIELDS = {
    "parameters", "layers", "hidden_size", "corpus", "tokens_seen", "train_seconds", "val_bits_per_char", "command",
}
EXPECTED = {"shakespeare": "tinyshakespeare.txt", "tinystories": "tinystories_val.txt"}


def test_both_sample_models_ship():
    assert set(EXPECTED) <= set(sample_models())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_model_card_and_size(name):
    directory = SAMPLE_MODELS_DIR / name
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 20 * 1024 * 1024
    card = json.loads((directory / "card.json").read_text())
    assert CARD_FIELDS <= set(card)
    assert card["corpus"] == EXPECTED[name]
    assert card["command"].startswith("python -m inspector.train ")
    assert 0.5 < card["val_bits_per_char"] < 3.0
    assert (SAMPLE_MODELS_DIR / "corpora" / card["corpus"]).exists()


@pytest.mark.parametrize(
    "name,prompt,markers",
    [
        ("shakespeare", "ROMEO:\n", ("thou", "thy", "thee", "lord", "my", "the", ":")),
        ("tinystories", "Once upon a time, ", ("she", "he", "was", "the", "and", ".")),
    ],
)
def test_sample_model_generates_in_style(name, prompt, markers):
    loaded = load_checkpoint(SAMPLE_MODELS_DIR / name)
    text = generate_text(loaded.model, loaded.tokenizer, prompt, max_new_tokens=60, temperature=0.0)
    words = text.lower()
    assert sum(marker in words for marker in markers) >= 3, text
