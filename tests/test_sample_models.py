"""The shipped sample models: present, small, documented, loadable, and writing in their corpus' style."""

from __future__ import annotations

import json
import re

import pytest
import torch

from inspector.lm.catalog import SAMPLE_MODELS_DIR, sample_models
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.tokenizer import encode
from inspector.lm.train import bits_per_character
from tests.conftest import generate_text

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
    assert card["command"].startswith("python -m inspector.lm.train ")
    assert (SAMPLE_MODELS_DIR / "corpora" / card["corpus"]).exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_model_measures_what_its_card_says(name):
    """The card's validation bits/char, measured again on the shipped model (not just read from the
    card): the held-out tail of the corpus, tokenized with the shipped tokenizer."""
    torch.set_num_threads(1)
    directory = SAMPLE_MODELS_DIR / name
    card = json.loads((directory / "card.json").read_text())
    text = (SAMPLE_MODELS_DIR / "corpora" / card["corpus"]).read_text(encoding="utf-8")
    val_text = text[len(text) - card["val_characters"] :]
    assert text[len(text) - card["val_characters"] - 1] == "\n"  # the split is at a line break
    loaded = load_checkpoint(directory)
    ids = torch.tensor(encode(loaded.tokenizer, val_text), dtype=torch.long)
    assert loaded.model.num_parameters() == card["parameters"]
    assert bits_per_character(loaded.model, ids, len(val_text)) == pytest.approx(card["val_bits_per_char"], abs=0.002)


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
