"""The shipped sample models: present, small, documented, loadable, and writing in their corpus' style."""

from __future__ import annotations

import json
import re

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


SPEAKER_LINE = re.compile(r"^[A-Z][A-Z ]+:$", re.MULTILINE)  # "CLAUDIO:" on a line of its own


def _continuation(name: str, prompt: str) -> str:
    loaded = load_checkpoint(SAMPLE_MODELS_DIR / name)
    return generate_text(loaded.model, loaded.tokenizer, prompt, max_new_tokens=60, temperature=0.0)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def test_shakespeare_writes_a_play():
    text = _continuation("shakespeare", "ROMEO:\n")
    assert SPEAKER_LINE.search(text), text  # a new speaker takes the stage
    assert text.count("\n") >= 3, text  # verse comes in short lines
    assert len(_words(text) & {"i", "my", "you", "and", "not", "thou", "thy", "lord", "the", "me"}) >= 3, text


def test_tinystories_tells_a_story():
    text = _continuation("tinystories", "Once upon a time, ")
    assert text.count(".") >= 2, text  # whole sentences
    assert len(_words(text) & {"she", "he", "was", "the", "and", "day", "little", "named", "wanted", "saw"}) >= 4, text
