"""A checkpoint with only a sentencepiece `tokenizer.model` loads, with the ids sentencepiece gives."""

from __future__ import annotations

import shutil

import pytest
import sentencepiece as spm

from inspector.errors import TokenizerError
from inspector.lm.checkpoint import load_checkpoint
from inspector.lm.generate import encode_prompt
from inspector.lm.sentencepiece_convert import convert_sentencepiece
from inspector.lm.tokenizer import decode_continuation, encode
from tests.conftest import REPO
from tests.make_released_fixture import write_released_checkpoint

CORPUS = (REPO / "sample_models" / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")


def _train(tmp_path, model_type: str = "bpe", **extra) -> str:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS[:150_000], encoding="utf-8")
    prefix = tmp_path / f"sp_{model_type}"
    options = dict(
        input=str(corpus), model_prefix=str(prefix), vocab_size=400, model_type=model_type, byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True, split_digits=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, minloglevel=2,
    )
    options.update(extra)
    spm.SentencePieceTrainer.train(**options)
    return str(prefix) + ".model"


@pytest.fixture(scope="module")
def llama_like_model(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("sp"))


def test_converted_ids_equal_sentencepiece_on_held_out_text(llama_like_model):
    tokenizer = convert_sentencepiece(llama_like_model)
    processor = spm.SentencePieceProcessor(model_file=llama_like_model)
    lines = CORPUS[200_000:260_000].splitlines() + ["東京 🙂 naïve  double  spaces", " leading", "tab\tx"]
    for line in lines:
        assert tokenizer.encode(line, add_special_tokens=False).ids == processor.encode(line), line
        assert tokenizer.decode(processor.encode(line)) == processor.decode(processor.encode(line))


def test_checkpoint_with_only_tokenizer_model(tmp_path, llama_like_model):
    directory = write_released_checkpoint(tmp_path / "ckpt")
    (directory / "tokenizer.json").unlink()
    shutil.copy(llama_like_model, directory / "tokenizer.model")
    loaded = load_checkpoint(directory)
    processor = spm.SentencePieceProcessor(model_file=llama_like_model)
    assert encode(loaded.tokenizer, "To be, or not") == processor.encode("To be, or not")
    assert encode_prompt(loaded.tokenizer, "To be")[0] == 1  # tokenizer_config.json: add_bos_token
    head, full = processor.encode("To"), processor.encode("To be")
    assert full[: len(head)] == head
    context = encode_prompt(loaded.tokenizer, "To")
    assert decode_continuation(loaded.tokenizer, context, full[len(head) :]) == " be"


def test_unigram_models_are_refused_with_a_reason(tmp_path):
    path = _train(tmp_path, model_type="unigram")
    with pytest.raises(TokenizerError, match="only BPE"):
        convert_sentencepiece(path)


def test_a_model_the_conversion_cannot_reproduce_is_refused(tmp_path):
    path = _train(tmp_path, remove_extra_whitespaces=True)  # collapses "  ", which the conversion does not
    with pytest.raises(TokenizerError, match="does not reproduce"):
        convert_sentencepiece(path)
